package config

// speed.explanations (a field of the Speed section in config.go): whether
// the speed layer writes, with each session view, the view's explanation
// (the session's recent items and, per recommended item, the counts that
// produced its score), which serve shows for explain=true in any topology.
// It costs CPU per view written (README: "Explanations"); false saves it,
// and speed items then say "unavailable" in a standalone serve.
// Default: true.
