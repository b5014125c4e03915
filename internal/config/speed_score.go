package config

// The keys of read-time scoring on a speed member (fields of the Speed
// section in config.go): the bearer token POST /internal/v1/score on
// speed.metrics_addr asks for (internal/readscore). A secret, so never a
// value in the configuration: read from a file or from the environment
// variable named (SpeedScoreToken), never logged.
//
//   - speed.score_token_file: a file holding the token (surrounding
//     whitespace trimmed).
//   - speed.score_token_env: the environment variable holding it (not a
//     LAMBDAREC_ name: those are configuration keys).
//
// Checked with the other credentials (validateSecretRef). Neither set
// (the default): the endpoint asks for no token; keep
// speed.metrics_addr on a private network then.

// SpeedScoreToken returns the token of speed.score_token_file or
// speed.score_token_env, "" when neither is set. Errors name the file or
// the variable, never the value.
func (c *Config) SpeedScoreToken() (string, error) {
	return ReadSecret(c.Speed.ScoreTokenFile, c.Speed.ScoreTokenEnv)
}
