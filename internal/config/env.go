package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// The environment rule. A LAMBDAREC_… variable is one of:
//
//   - a configuration key: its name is the key's path in upper case with
//     underscores (kafka.brokers → LAMBDAREC_KAFKA_BROKERS); it is applied;
//   - LAMBDAREC_CONFIG, the configuration file;
//   - LAMBDAREC_TEST_…, reserved for test harnesses (no key starts with
//     "test"); ignored;
//   - a Kubernetes service link: for every Service in its namespace, the
//     kubelet injects NAME_SERVICE_HOST, NAME_SERVICE_PORT[_PORTNAME],
//     NAME_PORT and NAME_PORT_<port>_<proto>[_PROTO|_PORT|_ADDR] into each
//     pod (unless the pod sets enableServiceLinks: false), so a Service named
//     lambdarec or lambdarec-serve yields LAMBDAREC_SERVICE_HOST,
//     LAMBDAREC_SERVE_PORT_8080_TCP_ADDR and so on. Such a variable is
//     ignored only when both its name and its value have the shape the
//     kubelet gives them (an IP address, a port number, tcp://IP:port, a
//     protocol name): LAMBDAREC_SERVE_PORT=8081, a user's guess at a key, is
//     still an error;
//   - a variable that a …_env key names (kafka.sasl.password_env, say): it
//     holds a secret that key points to, not a configuration value;
//   - anything else is an error, like an unknown YAML key: it is most likely
//     a typo, and a typo silently ignored is a setting silently not applied.
//     The error suggests the nearest key.

// EnvTestPrefix starts the variables that test harnesses read
// (LAMBDAREC_TEST_KAFKA, say); configuration ignores them.
const EnvTestPrefix = "LAMBDAREC_TEST_"

var (
	// NAME_SERVICE_HOST, NAME_SERVICE_PORT, NAME_SERVICE_PORT_<PORTNAME>
	serviceHostRe = regexp.MustCompile(`^[A-Z0-9_]+_SERVICE_HOST$`)
	servicePortRe = regexp.MustCompile(`^[A-Z0-9_]+_SERVICE_PORT(_[A-Z0-9_]+)?$`)
	// NAME_PORT, NAME_PORT_<port>_<proto>, …_PROTO, …_PORT, …_ADDR
	linkPortRe  = regexp.MustCompile(`^[A-Z0-9_]+_PORT$`)
	linkProtoRe = regexp.MustCompile(`^[A-Z0-9_]+_PORT_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?$`)
	linkURLRe   = regexp.MustCompile(`^(tcp|udp|sctp)://\[?[0-9A-Fa-f.:]+\]?:[0-9]+$`)
)

// serviceLink reports whether name=val has the shape of a variable the
// kubelet injects for a Service (see the environment rule above).
func serviceLink(name, val string) bool {
	isIP := func(s string) bool { _, err := netip.ParseAddr(s); return err == nil }
	isPort := func(s string) bool { n, err := strconv.Atoi(s); return err == nil && n > 0 && n < 65536 }
	switch {
	case serviceHostRe.MatchString(name):
		return isIP(val)
	case servicePortRe.MatchString(name):
		return isPort(val)
	case linkProtoRe.MatchString(name):
		switch {
		case strings.HasSuffix(name, "_PROTO"):
			return val == "tcp" || val == "udp" || val == "sctp"
		case strings.HasSuffix(name, "_ADDR"):
			return isIP(val)
		case strings.HasSuffix(name, "_PORT"):
			return isPort(val)
		default:
			return linkURLRe.MatchString(val)
		}
	case linkPortRe.MatchString(name):
		return linkURLRe.MatchString(val)
	}
	return false
}

// ignoredEnv reports whether a LAMBDAREC_… variable that names no key is
// nevertheless not a configuration error.
func ignoredEnv(name, val string) bool {
	return strings.HasPrefix(name, EnvTestPrefix) || serviceLink(name, val)
}

// nearestKey returns the variable of the key closest to name (edit distance
// at most 3), or "".
func nearestKey(name string, keys []string) string {
	best, bestD := "", 4
	for _, k := range keys {
		v := EnvPrefix + strings.ToUpper(k)
		if d := editDistance(name, v); d < bestD || d == bestD && v < best {
			best, bestD = v, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unknownEnv is the error for a LAMBDAREC_… variable that names no key.
func unknownEnv[V any](name string, keys map[string]V) error {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	if near := nearestKey(name, names); near != "" {
		return fmt.Errorf("%s: names no configuration key (did you mean %s?)", name, near)
	}
	return fmt.Errorf("%s: names no configuration key", name)
}

// namedByEnvKeys returns the variables that string keys ending in _env name
// (the password_env, token_env … keys pointing at secrets).
func namedByEnvKeys(keys map[string]reflect.Value) map[string]bool {
	named := map[string]bool{}
	for k, v := range keys {
		if strings.HasSuffix(k, "_env") && v.Kind() == reflect.String && v.String() != "" {
			named[v.String()] = true
		}
	}
	return named
}
