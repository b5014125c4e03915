package schemas

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Kind is the kind of a UserInteraction, in funnel order.
type Kind uint8

// The kinds of interaction, in funnel order. KindUnknown marks an event with no
// interaction set; valid events never have it.
const (
	KindUnknown Kind = iota
	KindPageView
	KindProductClick
	KindAddToCart
	KindPurchase
)

var kindNames = [...]string{"unknown", "page_view", "product_click", "add_to_cart", "purchase"}

// String returns the kind's name, as in the protobuf oneof and the events table.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, bool) {
	for i, n := range kindNames {
		if n == s && i != 0 {
			return Kind(i), true
		}
	}
	return KindUnknown, false
}

// Kind returns which interaction ev carries.
func (x *UserInteraction) Kind() Kind {
	switch x.GetInteraction().(type) {
	case *UserInteraction_PageView:
		return KindPageView
	case *UserInteraction_ProductClick:
		return KindProductClick
	case *UserInteraction_AddToCart:
		return KindAddToCart
	case *UserInteraction_Purchase:
		return KindPurchase
	}
	return KindUnknown
}

// Item returns the item id and category of whichever interaction x carries.
func (x *UserInteraction) Item() (itemID, category string) {
	switch i := x.GetInteraction().(type) {
	case *UserInteraction_PageView:
		return i.PageView.GetItemId(), i.PageView.GetCategory()
	case *UserInteraction_ProductClick:
		return i.ProductClick.GetItemId(), i.ProductClick.GetCategory()
	case *UserInteraction_AddToCart:
		return i.AddToCart.GetItemId(), i.AddToCart.GetCategory()
	case *UserInteraction_Purchase:
		return i.Purchase.GetItemId(), i.Purchase.GetCategory()
	}
	return "", ""
}

// EventTime returns the event time, or the zero time when it is unset.
func (x *UserInteraction) EventTime() time.Time {
	if ts := x.GetTimestamp(); ts != nil {
		return ts.AsTime()
	}
	return time.Time{}
}

// DecodeError is returned for bytes that are not a UserInteraction at all.
// Format is "protobuf" or "json".
type DecodeError struct {
	Format string
	Err    error
}

func (e *DecodeError) Error() string {
	return "decode " + e.Format + " UserInteraction: " + e.Err.Error()
}
func (e *DecodeError) Unwrap() error { return e.Err }

var unmarshalOpts = proto.UnmarshalOptions{DiscardUnknown: false}

// Decode parses a protobuf-encoded event into ev (which is reset first) and
// validates it against the clock now. The error is a *DecodeError or a
// *FieldError; either is a fit reason for the dead-letter topic.
func Decode(b []byte, ev *UserInteraction, now time.Time) error {
	if err := unmarshalOpts.Unmarshal(b, ev); err != nil {
		return &DecodeError{Format: "protobuf", Err: err}
	}
	return Validate(ev, now)
}

// Encode appends the protobuf encoding of ev to dst.
func Encode(dst []byte, ev *UserInteraction) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(dst, ev)
}

// JSON options: field names as in the .proto file (snake_case), so that JSON
// field paths and validation errors name fields the same way.
var (
	jsonMarshal   = protojson.MarshalOptions{UseProtoNames: true}
	jsonUnmarshal = protojson.UnmarshalOptions{}
)

// MarshalJSON returns the protojson encoding of ev with proto field names.
func MarshalJSON(ev *UserInteraction) ([]byte, error) { return jsonMarshal.Marshal(ev) }

// UnmarshalJSON parses a protojson-encoded event (either field-name style) into ev.
func UnmarshalJSON(b []byte, ev *UserInteraction) error {
	if err := jsonUnmarshal.Unmarshal(b, ev); err != nil {
		return &DecodeError{Format: "json", Err: err}
	}
	return nil
}
