package speed

import (
	"reflect"
	"testing"
)

// holdsPointer reports whether a value of ty holds a pointer the garbage
// collector follows.
func holdsPointer(ty reflect.Type) bool {
	switch ty.Kind() {
	case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface, reflect.UnsafePointer:
		return true
	case reflect.Struct:
		for i := range ty.NumField() {
			if holdsPointer(ty.Field(i).Type) {
				return true
			}
		}
	case reflect.Array:
		return ty.Len() > 0 && holdsPointer(ty.Elem())
	}
	return false
}

// TestSessionPointersFirst keeps session's fields that hold pointers before
// those that hold none (model.Session, in place, counts as one that holds
// pointers; its own test keeps its pointers first): the collector scans an
// object up to its last pointer, and the layer holds one per session.
func TestSessionPointersFirst(t *testing.T) {
	ty := reflect.TypeFor[session]()
	free := ""
	for i := range ty.NumField() {
		f := ty.Field(i)
		switch {
		case !holdsPointer(f.Type):
			if free == "" {
				free = f.Name
			}
		case free != "":
			t.Fatalf("session.%s holds a pointer after session.%s, which holds none", f.Name, free)
		}
	}
}

// TestWatchersHoldNoPointer keeps the rows' watcher lists pointer-free: a
// live session is listed under every row its view read.
func TestWatchersHoldNoPointer(t *testing.T) {
	f, _ := reflect.TypeFor[processor]().FieldByName("watchers")
	if holdsPointer(f.Type.Elem().Elem()) {
		t.Fatal("the rows' watcher lists hold pointers")
	}
}
