package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lambdarec/lambdarec/schemas"
)

func TestSplitArray(t *testing.T) {
	f := func(in string, max int, want ...string) {
		t.Helper()
		got, err := splitArray([]byte(in), max)
		if err != nil {
			t.Fatalf("splitArray(%q): %v", in, err)
		}
		gotS := make([]string, len(got))
		for i, g := range got {
			gotS[i] = string(g)
		}
		if !slices.Equal(gotS, want) {
			t.Fatalf("splitArray(%q) = %q, want %q", in, gotS, want)
		}
	}
	f(`[]`, 5)
	f(" \n[ \t]\r\n", 5)
	f(`[{}]`, 5, `{}`)
	f(`[ {"a":[1,{"b":"]}"}]} , {"c":"\"}"},[[]],"s",-1.5e3,true,null ]`, 10,
		`{"a":[1,{"b":"]}"}]}`, `{"c":"\"}"}`, `[[]]`, `"s"`, `-1.5e3`, `true`, `null`)
	f(`[1,2,3]`, 3, `1`, `2`, `3`)

	bad := func(in string, max int, wantErr error) {
		t.Helper()
		_, err := splitArray([]byte(in), max)
		if err == nil || (wantErr != nil && !errors.Is(err, wantErr)) {
			t.Fatalf("splitArray(%q) error %v, want %v", in, err, wantErr)
		}
	}
	bad(`[1,2,3,4]`, 3, errTooMany)
	bad(`[`, 3, errUnexpectedEnd)
	bad(`[{"a":1}`, 3, errUnexpectedEnd)
	bad(`[{"a":"1}]`, 3, errUnexpectedEnd)
	bad(`[1 2]`, 3, nil)
	bad(`[1,]`, 3, nil)
	bad(`[,1]`, 3, nil)
	bad(`[1]x`, 3, nil)
	bad(`[1][2]`, 3, nil)
	bad(`{}`, 3, nil)
	bad(``, 3, nil)
}

func TestEventsMember(t *testing.T) {
	f := func(in string, wantWrapper bool, wantValue string, wantErr bool) {
		t.Helper()
		v, w, err := eventsMember([]byte(in))
		if w != wantWrapper || string(v) != wantValue || (err != nil) != wantErr {
			t.Fatalf("eventsMember(%q) = %q, %v, %v; want %q, %v, error %v", in, v, w, err, wantValue, wantWrapper, wantErr)
		}
	}
	f(`{"events":[1]}`, true, `[1]`, false)
	f(` { "events" : [ {"events":2} ] } `, true, `[ {"events":2} ]`, false)
	f(`{"events":{}}`, true, `{}`, false)
	f(`{"event_id":"events","page_view":{"events":[]}}`, false, ``, false)
	f(`{}`, false, ``, false)
	f(`{"events":[],"other":1}`, true, ``, true)
	f(`{"other":1,"events":[]}`, true, ``, true)
	f(`{"events":[],"events":[]}`, true, ``, true)
	// Malformed objects are not wrappers: the event decoder reports them.
	f(`{"events":[]`, false, ``, false)
	f(`{"events" []}`, false, ``, false)
	f(`{"events":[]} x`, false, ``, false)
	f(`{events:[]}`, false, ``, false)
	f(`[]`, false, ``, false)
}

func TestSplitProtoBatch(t *testing.T) {
	evs := testEvents(3)
	b := protoBatch(t, evs)
	// Unknown fields (a varint 2, and field 1 as a varint) are skipped.
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	raws, err := splitProtoBatch(b, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(raws) != len(evs) {
		t.Fatalf("%d events, want %d", len(raws), len(evs))
	}
	for i, raw := range raws {
		var ev schemas.UserInteraction
		if err := proto.Unmarshal(raw, &ev); err != nil || !proto.Equal(&ev, evs[i]) {
			t.Fatalf("event %d: %v %v", i, &ev, err)
		}
	}
	if _, err := splitProtoBatch(b, 2); !errors.Is(err, errTooMany) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := splitProtoBatch(b[:len(b)-1], 10); err == nil {
		t.Fatal("truncated batch accepted")
	}
}

func TestParseContentType(t *testing.T) {
	f := func(h string, wantF format, wantBatch bool, wantStatus int) {
		t.Helper()
		gotF, gotBatch, rej := parseContentType(h)
		status := 0
		if rej != nil {
			status = rej.status
		}
		if gotF != wantF || gotBatch != wantBatch || status != wantStatus {
			t.Fatalf("parseContentType(%q) = %d, %v, %d; want %d, %v, %d", h, gotF, gotBatch, status, wantF, wantBatch, wantStatus)
		}
	}
	f("application/json", formatJSON, false, 0)
	f("Application/JSON; charset=utf-8", formatJSON, false, 0)
	f("application/x-protobuf", formatProtobuf, false, 0)
	f("application/protobuf", formatProtobuf, false, 0)
	f("application/x-protobuf; messageType=lambdarec.v1.UserInteraction", formatProtobuf, false, 0)
	f("application/x-protobuf; messageType=lambdarec.v1.UserInteractionBatch", formatProtobuf, true, 0)
	f(`application/x-protobuf; messagetype="lambdarec.v1.UserInteractionBatch"`, formatProtobuf, true, 0)
	f("application/x-protobuf; messageType=lambdarec.v1.Purchase", 0, false, http.StatusUnsupportedMediaType)
	f("application/json; charset=utf-16", 0, false, http.StatusUnsupportedMediaType)
	f("text/json", 0, false, http.StatusUnsupportedMediaType)
	f("", 0, false, http.StatusUnsupportedMediaType)
	f(";;", 0, false, http.StatusUnsupportedMediaType)
}

// FuzzSplitJSON checks the top-level JSON splitter against encoding/json:
// on valid JSON it finds exactly encoding/json's elements and members, and
// a body it splits whose parts are all valid JSON is valid JSON.
func FuzzSplitJSON(f *testing.F) {
	for _, s := range []string{
		`[]`, `[1, "a", {"b": [1, 2]}, [[]], null]`, `{"events": [{"x": "]"}]}`, `{"events":[], "a":1}`,
		`{"event_id":"e","page_view":{"item_id":"i"}}`, `[{"a":"\"\\"}]`, `[1,]`, `{"events":[]`, ` [ 1 ] `, `{"a":{"events":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := json.Valid(b)
		trimmed := bytes.TrimLeft(b, " \t\r\n")

		elems, err := splitArray(b, 1<<20)
		if err == nil {
			allValid := true
			for _, e := range elems {
				allValid = allValid && json.Valid(e)
			}
			if allValid && !valid {
				t.Fatalf("splitArray accepted invalid JSON %q", b)
			}
		}
		if valid && len(trimmed) > 0 && trimmed[0] == '[' {
			if err != nil {
				t.Fatalf("splitArray(%q): %v", b, err)
			}
			var want []json.RawMessage
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			if len(want) != len(elems) {
				t.Fatalf("splitArray(%q): %d elements, encoding/json finds %d", b, len(elems), len(want))
			}
			for i := range want {
				if !bytes.Equal(want[i], elems[i]) {
					t.Fatalf("splitArray(%q)[%d] = %q, encoding/json says %q", b, i, elems[i], want[i])
				}
			}
		}

		v, wrapper, err := eventsMember(b)
		if valid && len(trimmed) > 0 && trimmed[0] == '{' && !bytes.ContainsRune(b, '\\') {
			var members map[string]json.RawMessage
			if err := json.Unmarshal(b, &members); err != nil {
				t.Fatal(err)
			}
			_, has := members["events"]
			if wrapper != has {
				t.Fatalf("eventsMember(%q): wrapper %v, encoding/json sees events: %v", b, wrapper, has)
			}
			if wrapper && err == nil && (len(members) != 1 || !bytes.Equal(members["events"], v)) {
				t.Fatalf("eventsMember(%q) = %q, encoding/json: %q", b, v, members)
			}
		}
		// Around its value, an accepted wrapper is well-formed (the value
		// itself is checked by splitArray and the event decoder).
		if !valid && wrapper && err == nil && json.Valid(v) {
			t.Fatalf("eventsMember accepted invalid JSON %q", b)
		}
	})
}

// FuzzSplitProtoBatch checks the batch splitter against protobuf decoding:
// a body splits into events that all decode exactly when it decodes as a
// UserInteractionBatch, into the same events.
func FuzzSplitProtoBatch(f *testing.F) {
	f.Add(protoBatch(f, testEvents(3)))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00, 0x10, 0x01, 0x08, 0x05})
	f.Add([]byte{0x0b, 0x0c})
	f.Fuzz(func(t *testing.T, b []byte) {
		var batch schemas.UserInteractionBatch
		batchErr := proto.Unmarshal(b, &batch)
		raws, err := splitProtoBatch(b, 1<<20)
		var evs []*schemas.UserInteraction
		for i := 0; err == nil && i < len(raws); i++ {
			ev := new(schemas.UserInteraction)
			err = proto.Unmarshal(raws[i], ev)
			evs = append(evs, ev)
		}
		if (err == nil) != (batchErr == nil) {
			t.Fatalf("split error %v, batch decode error %v, for %x", err, batchErr, b)
		}
		if err != nil {
			return
		}
		if len(evs) != len(batch.Events) {
			t.Fatalf("split %d events, batch decodes %d", len(evs), len(batch.Events))
		}
		for i := range evs {
			if !proto.Equal(evs[i], batch.Events[i]) {
				t.Fatalf("event %d: split %v, batch %v", i, evs[i], batch.Events[i])
			}
		}
	})
}
