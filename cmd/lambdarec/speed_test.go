package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/serving"
)

// TestSpeedCommand starts `lambdarec speed` against the embedded broker: it
// joins the group, becomes ready, serves its metrics, and stops cleanly.
func TestSpeedCommand(t *testing.T) {
	br := startBroker(t, 3, "events", "events.dlq")
	isolateIceberg(t)
	metrics := freeAddr(t)
	tokenFile := filepath.Join(t.TempDir(), "score-token")
	if err := os.WriteFile(tokenFile, []byte(speedScoreToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LAMBDAREC_SPEED_SCORE_TOKEN_FILE", tokenFile)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr serveTestBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"speed", "--brokers", br.Addr(), "--metrics-addr", metrics}, &stdout, &stderr)
	}()
	waitFor(t, 30*time.Second, "lambdarec speed ready", func() bool {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "lambdarec_speed_") {
		t.Fatalf("no speed metrics at /metrics:\n%s", tail(string(body), 2000))
	}
	lintMetrics(t, "speed", body)

	// Read-time scoring on the metrics listener, behind the token.
	score := func(auth string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "http://"+metrics+readscore.Path, strings.NewReader(`{"recent":["i00001","i00002"]}`))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, b := score("Bearer wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d %s", code, b)
	}
	if code, b := score("Bearer " + speedScoreToken); code != http.StatusOK || !strings.Contains(b, `"items":[]`) {
		t.Fatalf("token: %d %s", code, b) // no batch, no record: ready, nothing to recommend
	}
	cancel()
	awaitSpeedExit(t, exit, &stderr)
	if strings.Contains(stderr.String(), speedScoreToken) || strings.Contains(stdout.String(), speedScoreToken) {
		t.Fatal("the scoring token was logged")
	}
}

// speedScoreToken is TestSpeedCommand's speed.score_token.
const speedScoreToken = "sc0re-t0ken-of-the-test"

// TestSpeedMemberReportsShedSessions runs a production `lambdarec speed`
// member whose speed.max_sessions is smaller than the sessions produced
// (kfake over TCP): the member's own GET /v1/status turns degraded with
// speed_state_full, its log says so once, and `lambdarec serve`, which sees
// the member only through the group's offset commits, reports the same
// fault on its speed layer.
func TestSpeedMemberReportsShedSessions(t *testing.T) {
	br := startBroker(t, 3, "events", "events.dlq")
	isolateIceberg(t)
	metrics := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "speed.yml")
	if err := os.WriteFile(cfgPath, []byte("speed:\n  max_sessions: 5\n  commit_interval: 100ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr serveTestBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"speed", "--config", cfgPath, "--brokers", br.Addr(), "--metrics-addr", metrics}, &stdout, &stderr)
	}()
	memberStatus := func() (int, speedMemberStatus) {
		var st speedMemberStatus
		resp, err := http.Get("http://" + metrics + "/v1/status")
		if err != nil {
			return 0, st
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatalf("member /v1/status: %v", err)
		}
		return resp.StatusCode, st
	}
	waitFor(t, 30*time.Second, "lambdarec speed ready", func() bool {
		code, st := memberStatus()
		return code == http.StatusOK && st.State == serving.StateOK
	})

	cl, err := kafka.NewClient([]string{br.Addr()}, kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 40 {
		s := fmt.Sprintf("s-%02d", i)
		ev := &schemas.UserInteraction{EventId: "e-" + s, Timestamp: timestamppb.Now(), UserId: "u-" + s, SessionId: s,
			Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: fmt.Sprintf("i-%d", i%7)}}}
		val, _ := schemas.Encode(nil, ev)
		recs = append(recs, &kgo.Record{Key: []byte(s), Value: val})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var member speedMemberStatus
	waitFor(t, 30*time.Second, "the member's /v1/status degraded with speed_state_full", func() bool {
		_, member = memberStatus()
		return member.State == serving.StateDegraded && hasReason(member.Reasons, serving.FaultSpeedStateFull)
	})
	for _, r := range member.Reasons {
		if r.Code == serving.FaultSpeedStateFull && (r.State != serving.StateDegraded || !strings.Contains(r.Message, "speed.max_sessions")) {
			t.Errorf("member reason %+v", r)
		}
	}

	sc := startServe(t, 10*time.Second, "", "--http", "127.0.0.1:0", "--brokers", br.Addr())
	var speedLayer serving.LayerReport
	waitFor(t, 30*time.Second, "serve's /v1/status: speed degraded with speed_state_full", func() bool {
		_, body := serveTestDo(t, http.MethodGet, sc.base+"/v1/status", "", "")
		var st serving.Status
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("serve /v1/status: %v: %s", err, body)
		}
		for _, l := range st.Layers {
			if l.Layer == "speed" {
				speedLayer = l
			}
		}
		return speedLayer.State == serving.StateDegraded && hasReason(speedLayer.Reasons, serving.FaultSpeedStateFull)
	})
	sc.stop(t)

	if n := strings.Count(stderr.String(), "speed layer evicting sessions"); n != 1 {
		t.Errorf("%d WARN lines about shed sessions, want 1 (at most one a minute):\n%s", n, tail(stderr.String(), 3000))
	}
	cancel()
	awaitSpeedExit(t, exit, &stderr)
}

// hasReason reports whether reasons hold one with code.
func hasReason(reasons []serving.Fault, code string) bool {
	for _, r := range reasons {
		if r.Code == code {
			return true
		}
	}
	return false
}

// awaitSpeedExit waits for a cancelled `lambdarec speed` to exit 0.
func awaitSpeedExit(t *testing.T, exit <-chan int, stderr *serveTestBuffer) {
	t.Helper()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, tail(stderr.String(), 3000))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lambdarec speed did not stop")
	}
}
