package config

// speed.score_views (a field of the Speed section in config.go): whether
// the speed layer scores each session view it writes. true: a view holds
// the session's recommendations (Items) and their explanation, scored at
// its last record. false: a view holds only what the session is scored
// from — its recent items (an explanation with no contributions, each
// recent item's top count 0), its purchases, user, event time and
// position — and no Items; no view is scored or explained, and rescoring
// is off whatever speed.rescore_interval says. For deployments whose every
// read is scored at read time (serve.speed_scorers, or dev): serve scores
// the stored inputs through a speed member (internal/readscore); a read
// whose scoring fails answers no speed items (batch and popular follow).
// Default: true (`lambdarec dev`: DevScoreViews, unless set).
