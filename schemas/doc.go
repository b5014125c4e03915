// Package schemas owns lambdarec's event contract: the protobuf UserInteraction
// (interaction.proto, with its generated Go code), its single validation routine,
// its wire and JSON codecs, and the Arrow and Iceberg schemas of the raw `events`
// table, derived from the protobuf descriptor so the two cannot drift.
package schemas
