package main

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/serving"
)

func (p *devProcess) status(t *testing.T) serving.Status {
	t.Helper()
	resp, err := http.Get(p.base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st serving.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (p *devProcess) layer(t *testing.T, name string) serving.LayerReport {
	t.Helper()
	for _, l := range p.status(t).Layers {
		if l.Layer == name {
			return l
		}
	}
	t.Fatalf("/v1/status has no layer %s", name)
	return serving.LayerReport{}
}

// TestDevArchiveFailureKeepsServing breaks the archive's storage under a
// running `lambdarec dev` (the events table's data directory replaced by a
// file: every write fails, as on a full disk, and root cannot get around
// it): the archive is reported down at /v1/status with the error (its
// flushes retried with backoff, or the role restarted), while serve keeps
// answering and accepting events;
// once the storage is back the archive recovers, and dev stops cleanly.
func TestDevArchiveFailureKeepsServing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts lambdarec dev; not in -short")
	}
	bin := buildLambdarec(t)
	dataDir := t.TempDir()
	p := startDev(t, bin, dataDir, freeAddr(t), freeAddr(t))

	var dataPath string
	waitFor(t, 90*time.Second, "a first archive commit", func() bool {
		if p.layer(t, "archive").LastUpdate.IsZero() {
			return false
		}
		filepath.WalkDir(filepath.Join(dataDir, "warehouse"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.HasSuffix(path, string(filepath.Separator)+filepath.Join("events", "data")) {
				dataPath = path
			}
			return nil
		})
		return dataPath != ""
	})

	// Break it.
	if err := os.Rename(dataPath, dataPath+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dataPath, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var down serving.LayerReport
	waitFor(t, 90*time.Second, "the archive reported down", func() bool {
		down = p.layer(t, "archive")
		return down.State == serving.StateDown
	})
	if len(down.Reasons) == 0 || (down.Reasons[0].Code != FaultCodeRoleFailed && down.Reasons[0].Code != FaultCodeArchiveFailing) ||
		!strings.Contains(down.Reasons[0].Message, "archive") {
		t.Fatalf("archive down without the role's failure as reason: %+v", down.Reasons)
	}
	t.Logf("archive down: %s", down.Reasons[0].Message)

	// Serve goes on: ready, answering, accepting events.
	for range 3 {
		select {
		case err := <-p.done:
			t.Fatalf("lambdarec dev exited (%v) after the archive failed", err)
		default:
		}
		if resp, err := http.Get(p.base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/readyz while the archive is down: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		p.recommendations(t, url.Values{"user_id": {"u000001"}, "k": {"5"}})
		p.post(t, view("sup-"+time.Now().Format("150405.000000"), "u1", "sup-s", "i00001", time.Now()))
		time.Sleep(time.Second)
	}

	// Repair: the archive is restarted and recovers.
	if err := os.Remove(dataPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dataPath+".moved", dataPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "the archive recovered", func() bool {
		l := p.layer(t, "archive")
		for _, r := range l.Reasons {
			if r.Code == FaultCodeRoleFailed || r.Code == FaultCodeArchiveFailing {
				return false
			}
		}
		return !l.LastUpdate.IsZero() && l.LastUpdate.After(down.LastUpdate)
	})
	p.stop(t)
}
