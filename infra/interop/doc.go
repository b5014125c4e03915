// Package interop holds lambdarec's checks against other engines of the
// Iceberg ecosystem: its tables are standard Iceberg that any reader can
// open. interop_test.go writes a small warehouse with lambdarec (embedded
// broker → generator → archive → batch run) and has PyIceberg
// (pyiceberg_check.py) read the events table and every batch-view table
// through lambdarec's SQL catalog, comparing row counts and schemas with
// what iceberg-go wrote. CI provides the Python with PyIceberg in
// INTEROP_PYTHON (see .ci/run).
package interop
