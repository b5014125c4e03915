package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go/table"
)

// Pins: a reader that scans a snapshot for a long time (a batch run) pins it
// with an Iceberg tag named PinPrefix + <unix ms of the pin> + "-" + <owner>.
// Snapshot expiry never removes a snapshot a tag points at, nor the files it
// references, so the reader's scan cannot lose its files under it. The reader
// removes its tag when it is done (Unpin). A reader that crashes leaves its
// tag behind: maintenance removes pins older than its maximum pin age, read
// from the tag's name (the time the pin was taken, not the snapshot's age).
const PinPrefix = "lambdarec-pin-"

// Pin tags snapshot snapshotID of table name for owner and returns the tag's
// name. It fails when the snapshot no longer exists (it was expired between
// the reader's load and its pin): the reader then loads the table again.
func (l *Lakehouse) Pin(ctx context.Context, name string, snapshotID int64, owner string, now time.Time) (string, error) {
	tag := PinPrefix + strconv.FormatInt(now.UnixMilli(), 10) + "-" + sanitizeRef(owner)
	err := l.commitRefs(ctx, name, func(meta table.Metadata) ([]table.Update, error) {
		if meta.SnapshotByID(snapshotID) == nil {
			return nil, fmt.Errorf("pin snapshot %d of %s: %w", snapshotID, name, ErrNoSnapshot)
		}
		return []table.Update{table.NewSetSnapshotRefUpdate(tag, snapshotID, table.TagRef, 0, 0, 0)}, nil
	})
	if err != nil {
		return "", err
	}
	return tag, nil
}

// ErrNoSnapshot is returned by Pin for a snapshot that does not exist.
var ErrNoSnapshot = errors.New("no such snapshot")

// Unpin removes pin tag of table name; a tag already gone is not an error.
func (l *Lakehouse) Unpin(ctx context.Context, name, tag string) error {
	return l.commitRefs(ctx, name, func(meta table.Metadata) ([]table.Update, error) {
		if _, ok := refOf(meta, tag); !ok {
			return nil, nil
		}
		return []table.Update{table.NewRemoveSnapshotRefUpdate(tag)}, nil
	})
}

// Pin is one pin tag of a table.
type Pin struct {
	Tag        string
	SnapshotID int64
	// At is when the pin was taken (from the tag's name).
	At time.Time
}

// Pins lists the pin tags of meta.
func Pins(meta table.Metadata) []Pin {
	var out []Pin
	for name, ref := range meta.Refs() {
		rest, ok := strings.CutPrefix(name, PinPrefix)
		if !ok || ref.SnapshotRefType != table.TagRef {
			continue
		}
		ms, _, _ := strings.Cut(rest, "-")
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			continue // not ours; left alone
		}
		out = append(out, Pin{Tag: name, SnapshotID: ref.SnapshotID, At: time.UnixMilli(n)})
	}
	return out
}

// RemovePins removes the pin tags of table name that pred selects and returns
// how many it removed.
func (l *Lakehouse) RemovePins(ctx context.Context, name string, pred func(Pin) bool) (int, error) {
	removed := 0
	err := l.commitRefs(ctx, name, func(meta table.Metadata) ([]table.Update, error) {
		var ups []table.Update
		for _, p := range Pins(meta) {
			if pred(p) {
				ups = append(ups, table.NewRemoveSnapshotRefUpdate(p.Tag))
			}
		}
		removed = len(ups)
		return ups, nil
	})
	return removed, err
}

func refOf(meta table.Metadata, name string) (table.SnapshotRef, bool) {
	for n, r := range meta.Refs() {
		if n == name {
			return r, true
		}
	}
	return table.SnapshotRef{}, false
}

// commitRefs commits the ref updates build returns for the current metadata
// of table name, retrying on conflicts with other writers; nothing to do when
// build returns none.
func (l *Lakehouse) commitRefs(ctx context.Context, name string, build func(table.Metadata) ([]table.Update, error)) error {
	ident := l.Ident(name)
	lock := l.commitLock(strings.Join(ident, "."))
	for attempt := 1; ; attempt++ {
		lock.Lock()
		err := l.commitRefsOnce(ctx, ident, build)
		lock.Unlock()
		if err == nil || errors.Is(err, errNothingToDo) {
			return nil
		}
		if !IsCommitConflict(err) || attempt >= 10 {
			return fmt.Errorf("update refs of %s (attempt %d): %w", strings.Join(ident, "."), attempt, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("update refs of %s: %w", strings.Join(ident, "."), context.Cause(ctx))
		case <-time.After(backoff(attempt, 20*time.Millisecond, time.Second)):
		}
	}
}

var errNothingToDo = errors.New("nothing to do")

// commitRefsOnce makes one attempt of commitRefs.
func (l *Lakehouse) commitRefsOnce(ctx context.Context, ident table.Identifier, build func(table.Metadata) ([]table.Update, error)) error {
	tbl, err := l.cat.LoadTable(ctx, ident)
	if err != nil {
		return fmt.Errorf("load table %s: %w", strings.Join(ident, "."), err)
	}
	ups, err := build(tbl.Metadata())
	if err != nil {
		return err
	}
	if len(ups) == 0 {
		return errNothingToDo
	}
	reqs := []table.Requirement{table.AssertTableUUID(tbl.Metadata().TableUUID())}
	_, _, err = l.cat.CommitTable(ctx, ident, reqs, ups)
	return err
}

// sanitizeRef keeps owner usable in a ref name.
func sanitizeRef(owner string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, owner)
}
