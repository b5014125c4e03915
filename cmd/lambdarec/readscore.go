package main

import (
	"errors"
	"net/http"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/readscore"
)

// Read-time scoring's wiring: serve scores a live session through a
// readscore.Scorer — in dev its in-process speed layer (layerScorer), in a
// standalone serve the speed members of serve.speed_scorers over HTTP
// (newSpeedScoreClient).

// layerScorer is dev's speed layer as a readscore.Scorer, or nil (read-time
// scoring off) while the layer does not implement it.
func layerScorer(layer any) readscore.Scorer {
	if s, ok := layer.(readscore.Scorer); ok {
		return s
	}
	return nil
}

// errNoScoreClient is newSpeedScoreClient's answer while this build has no
// HTTP client of the speed members' scoring endpoint.
var errNoScoreClient = errors.New("serve.speed_scorers: this build has no read-time scoring client (internal/readscore.NewClient); leave the key empty")

// newSpeedScoreClient builds the scorer of serve.speed_scorers:
// readscore.NewClient(urls, token, timeout, hc) once internal/readscore has
// it (a variable so that tests can build a scorer of their own).
var newSpeedScoreClient = func(urls []string, token string, timeout time.Duration, hc *http.Client) (readscore.Scorer, error) {
	return nil, errNoScoreClient
}

// speedScorer returns serve's scorer: with the speed layer in this process
// (dev) its scorer, given (serve.speed_scorers is not used); else the
// client of serve.speed_scorers, or nil (off) when the key is empty.
func speedScorer(cfg config.Serve, given readscore.Scorer, inProcess bool) (readscore.Scorer, error) {
	if inProcess || len(cfg.SpeedScorers) == 0 {
		return given, nil
	}
	token, err := config.ReadSecret(cfg.SpeedScoreTokenFile, cfg.SpeedScoreTokenEnv)
	if err != nil {
		return nil, errors.New("serve.speed_score_token: " + err.Error())
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64 // one connection per concurrent read
	return newSpeedScoreClient(cfg.SpeedScorers, token, cfg.SpeedScoreTimeout, &http.Client{Transport: tr})
}
