package config

import (
	"fmt"
	"net/url"
	"time"
)

// DefaultSpeedScoreTimeout is serve.speed_score_timeout's default.
const DefaultSpeedScoreTimeout = 50 * time.Millisecond

// validateSpeedScorers checks serve's read-time scoring keys: a positive
// timeout, absolute http(s) URLs without query or fragment, each once, and
// the token's secret reference.
func validateSpeedScorers(s Serve) []error {
	var errs []error
	if s.SpeedScoreTimeout <= 0 {
		errs = append(errs, fmt.Errorf("serve.speed_score_timeout: must be positive, got %s", s.SpeedScoreTimeout))
	}
	seen := map[string]bool{}
	for i, raw := range s.SpeedScorers {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("serve.speed_scorers[%d]: %v", i, err))
		case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, fmt.Errorf("serve.speed_scorers[%d]: %q is not an http:// or https:// URL with a host", i, raw))
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			errs = append(errs, fmt.Errorf("serve.speed_scorers[%d]: %q must not carry a query, fragment or user (the token is serve.speed_score_token_file/_env)", i, u.Redacted()))
		case seen[raw]:
			errs = append(errs, fmt.Errorf("serve.speed_scorers[%d]: %q listed twice", i, raw))
		}
		seen[raw] = true
	}
	errs = append(errs, validateSecretRef("serve.speed_score_token", s.SpeedScoreTokenFile, s.SpeedScoreTokenEnv)...)
	return errs
}
