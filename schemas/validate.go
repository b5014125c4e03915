package schemas

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits of the contract. They bound what one event may carry so that a single
// bad producer cannot blow up session state or the archive.
const (
	// MaxIDLen bounds event_id, user_id, session_id, item_id, order_id and
	// correlation_id, in bytes.
	MaxIDLen = 128
	// MaxCategoryLen bounds category names, in bytes.
	MaxCategoryLen = 128
	// MaxMapEntries bounds the device and location maps.
	MaxMapEntries = 32
	// MaxMapKeyLen and MaxMapValueLen bound map keys and values, in bytes.
	MaxMapKeyLen   = 64
	MaxMapValueLen = 256
	// MaxFutureSkew is how far past the validator's clock an event time may be.
	MaxFutureSkew = time.Hour
	// MaxQuantity bounds add_to_cart and purchase quantities.
	MaxQuantity = 10_000
	// MaxPrice bounds prices.
	MaxPrice = 1e9
	// SchemaVersion is the version of this contract that lambdarec writes.
	SchemaVersion = 1
)

// MinTimestamp is the earliest event time accepted.
var MinTimestamp = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// FieldError is a validation failure of one field of an event. Field is the
// protobuf (and JSON) path of the field, for example "add_to_cart.quantity".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ErrNoInteraction is wrapped by the FieldError of an event that carries none of
// page_view, product_click, add_to_cart or purchase.
var ErrNoInteraction = errors.New("exactly one of page_view, product_click, add_to_cart, purchase is required")

// Validate checks ev against the contract, with now as the clock for the future
// bound. It returns nil or a *FieldError naming the first offending field. It is
// the only place where the rules of the contract are written.
func Validate(ev *UserInteraction, now time.Time) error {
	if ev == nil {
		return &FieldError{Field: "event", Reason: "missing"}
	}
	if err := checkID("event_id", ev.GetEventId(), true); err != nil {
		return err
	}
	ts := ev.GetTimestamp()
	switch {
	case ts == nil:
		return &FieldError{Field: "timestamp", Reason: "required"}
	case ts.CheckValid() != nil:
		return &FieldError{Field: "timestamp", Reason: ts.CheckValid().Error()}
	}
	t := ts.AsTime()
	if t.Before(MinTimestamp) {
		return &FieldError{Field: "timestamp", Reason: fmt.Sprintf("%s is before %s", t.Format(time.RFC3339), MinTimestamp.Format(time.RFC3339))}
	}
	if t.After(now.Add(MaxFutureSkew)) {
		return &FieldError{Field: "timestamp", Reason: fmt.Sprintf("%s is more than %s in the future", t.Format(time.RFC3339), MaxFutureSkew)}
	}
	if err := checkID("user_id", ev.GetUserId(), true); err != nil {
		return err
	}
	if err := checkID("session_id", ev.GetSessionId(), true); err != nil {
		return err
	}
	if err := validateInteraction(ev); err != nil {
		return err
	}
	if err := checkMap("device", ev.GetDevice()); err != nil {
		return err
	}
	if err := checkMap("location", ev.GetLocation()); err != nil {
		return err
	}
	if m := ev.GetMetadata(); m != nil {
		if err := checkString("metadata.source", m.GetSource(), MaxIDLen, false); err != nil {
			return err
		}
		if err := checkID("metadata.correlation_id", m.GetCorrelationId(), false); err != nil {
			return err
		}
		if v := m.GetSchemaVersion(); v > SchemaVersion {
			return &FieldError{Field: "metadata.schema_version", Reason: fmt.Sprintf("version %d is newer than the supported %d", v, SchemaVersion)}
		}
	}
	return nil
}

func validateInteraction(ev *UserInteraction) error {
	switch x := ev.GetInteraction().(type) {
	case *UserInteraction_PageView:
		if x.PageView == nil {
			return &FieldError{Field: "page_view", Reason: "empty"}
		}
		return checkItem("page_view", x.PageView.GetItemId(), x.PageView.GetCategory())
	case *UserInteraction_ProductClick:
		if x.ProductClick == nil {
			return &FieldError{Field: "product_click", Reason: "empty"}
		}
		return checkItem("product_click", x.ProductClick.GetItemId(), x.ProductClick.GetCategory())
	case *UserInteraction_AddToCart:
		a := x.AddToCart
		if a == nil {
			return &FieldError{Field: "add_to_cart", Reason: "empty"}
		}
		if err := checkItem("add_to_cart", a.GetItemId(), a.GetCategory()); err != nil {
			return err
		}
		return checkLine("add_to_cart", a.GetPrice(), a.GetQuantity())
	case *UserInteraction_Purchase:
		p := x.Purchase
		if p == nil {
			return &FieldError{Field: "purchase", Reason: "empty"}
		}
		if err := checkItem("purchase", p.GetItemId(), p.GetCategory()); err != nil {
			return err
		}
		if err := checkLine("purchase", p.GetPrice(), p.GetQuantity()); err != nil {
			return err
		}
		return checkID("purchase.order_id", p.GetOrderId(), true)
	default:
		return &FieldError{Field: "interaction", Reason: ErrNoInteraction.Error()}
	}
}

func checkItem(prefix, item, category string) error {
	if err := checkID(prefix+".item_id", item, true); err != nil {
		return err
	}
	return checkString(prefix+".category", category, MaxCategoryLen, false)
}

func checkLine(prefix string, price float64, qty int32) error {
	if !(price >= 0 && price <= MaxPrice) { // also rejects NaN
		return &FieldError{Field: prefix + ".price", Reason: fmt.Sprintf("must be between 0 and %g", float64(MaxPrice))}
	}
	if qty < 1 || qty > MaxQuantity {
		return &FieldError{Field: prefix + ".quantity", Reason: fmt.Sprintf("must be between 1 and %d", MaxQuantity)}
	}
	return nil
}

func checkID(field, v string, required bool) error {
	return checkString(field, v, MaxIDLen, required)
}

func checkString(field, v string, max int, required bool) error {
	switch {
	case v == "":
		if required {
			return &FieldError{Field: field, Reason: "required"}
		}
	case len(v) > max:
		return &FieldError{Field: field, Reason: fmt.Sprintf("longer than %d bytes", max)}
	case !utf8.ValidString(v):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	}
	return nil
}

func checkMap(field string, m map[string]string) error {
	if len(m) > MaxMapEntries {
		return &FieldError{Field: field, Reason: fmt.Sprintf("more than %d entries", MaxMapEntries)}
	}
	for k, v := range m {
		if k == "" {
			return &FieldError{Field: field, Reason: "empty key"}
		}
		if len(k) > MaxMapKeyLen || !utf8.ValidString(k) {
			return &FieldError{Field: field, Reason: fmt.Sprintf("key longer than %d bytes or not UTF-8", MaxMapKeyLen)}
		}
		if err := checkString(field+"."+k, v, MaxMapValueLen, false); err != nil {
			return err
		}
	}
	return nil
}
