package main

import (
	"errors"
	"net/http"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/readscore"
)

// Read-time scoring's wiring: serve scores a live session through a
// readscore.Scorer — in dev its in-process speed layer, in a
// standalone serve the speed members of serve.speed_scorers over HTTP
// (newSpeedScoreClient).

// newSpeedScoreClient builds the scorer of serve.speed_scorers (a variable
// so that tests can build a scorer of their own).
var newSpeedScoreClient = func(urls []string, token string, timeout time.Duration, hc *http.Client) (readscore.Scorer, error) {
	return readscore.NewClient(urls, token, timeout, hc), nil
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
