// Package gclayout owns the checks that keep the hot structures' memory
// layout cheap for the garbage collector: whether a type holds a pointer
// the collector follows, and whether a struct keeps its pointer-holding
// fields first (the collector scans an object only up to its last
// pointer). Tests of the packages holding such structures use it.
package gclayout

import "reflect"

// HoldsPointer reports whether a value of ty holds a pointer the garbage
// collector follows.
func HoldsPointer(ty reflect.Type) bool {
	switch ty.Kind() {
	case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface, reflect.UnsafePointer:
		return true
	case reflect.Struct:
		for i := range ty.NumField() {
			if HoldsPointer(ty.Field(i).Type) {
				return true
			}
		}
	case reflect.Array:
		return ty.Len() > 0 && HoldsPointer(ty.Elem())
	}
	return false
}

// PointerAfterScalar returns the first field of struct ty that holds a
// pointer although an earlier field, after, holds none; ok is false when
// every pointer-holding field comes first.
func PointerAfterScalar(ty reflect.Type) (field, after string, ok bool) {
	for i := range ty.NumField() {
		f := ty.Field(i)
		switch {
		case !HoldsPointer(f.Type):
			if after == "" {
				after = f.Name
			}
		case after != "":
			return f.Name, after, true
		}
	}
	return "", "", false
}
