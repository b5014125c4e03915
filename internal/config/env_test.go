package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestEnvKubernetesServiceLinks feeds Load what the kubelet injects for
// Services named lambdarec, lambdarec-serve and lambdarec-speed-metrics (the
// issue's crash at start) and checks none of it is an error, while the same
// names with a user's values still are.
func TestEnvKubernetesServiceLinks(t *testing.T) {
	injected := []string{
		"LAMBDAREC_SERVICE_HOST=10.96.0.12",
		"LAMBDAREC_SERVICE_PORT=80",
		"LAMBDAREC_SERVICE_PORT_HTTP=80",
		"LAMBDAREC_PORT=tcp://10.96.0.12:80",
		"LAMBDAREC_PORT_80_TCP=tcp://10.96.0.12:80",
		"LAMBDAREC_PORT_80_TCP_PROTO=tcp",
		"LAMBDAREC_PORT_80_TCP_PORT=80",
		"LAMBDAREC_PORT_80_TCP_ADDR=10.96.0.12",
		"LAMBDAREC_SERVE_SERVICE_HOST=fd00::1",
		"LAMBDAREC_SERVE_SERVICE_PORT=8080",
		"LAMBDAREC_SERVE_PORT=tcp://[fd00::1]:8080",
		"LAMBDAREC_SERVE_PORT_8080_TCP=tcp://[fd00::1]:8080",
		"LAMBDAREC_SERVE_PORT_8080_TCP_ADDR=fd00::1",
		"LAMBDAREC_SPEED_METRICS_SERVICE_PORT_METRICS=9464",
		"LAMBDAREC_SPEED_METRICS_PORT_9464_UDP_PROTO=udp",
		"LAMBDAREC_TEST_KAFKA=127.0.0.1:19092",
		"LAMBDAREC_CONFIG=",
		"LAMBDAREC_SPEED_INSTANCE_ID=lambdarec-speed-1",
	}
	cfg, err := Load("", injected)
	if err != nil {
		t.Fatalf("kubelet-injected variables rejected: %v", err)
	}
	if cfg.Speed.InstanceID != "lambdarec-speed-1" {
		t.Errorf("speed.instance_id = %q, want the pod name", cfg.Speed.InstanceID)
	}

	bad := func(kv, want string) {
		t.Helper()
		_, err := Load("", append(append([]string{}, injected...), kv))
		if err == nil {
			t.Errorf("%s: accepted", kv)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not contain %q", kv, err, want)
		}
	}
	// Service-link names with values the kubelet never writes: a user's typo.
	bad("LAMBDAREC_SERVE_PORT=8081", "LAMBDAREC_SERVE_PORT: names no configuration key")
	bad("LAMBDAREC_SERVICE_HOST=my-host", "LAMBDAREC_SERVICE_HOST")
	bad("LAMBDAREC_SERVE_SERVICE_PORT=http", "LAMBDAREC_SERVE_SERVICE_PORT")
	bad("LAMBDAREC_PORT_80_TCP_PROTO=http", "LAMBDAREC_PORT_80_TCP_PROTO")
	bad("LAMBDAREC_PORT_80_TCP=80", "LAMBDAREC_PORT_80_TCP")
	// Typos of real keys name the key meant.
	bad("LAMBDAREC_KAFKA_BROKER=a:1", "did you mean LAMBDAREC_KAFKA_BROKERS?")
	bad("LAMBDAREC_SPEED_INSTANCEID=x", "did you mean LAMBDAREC_SPEED_INSTANCE_ID?")
	bad("LAMBDAREC_SERVE_ADR=0.0.0.0:80", "did you mean LAMBDAREC_SERVE_ADDR?")
	// Far from every key: no suggestion, still an error.
	bad("LAMBDAREC_SOMETHING_ELSE_ENTIRELY=1", "LAMBDAREC_SOMETHING_ELSE_ENTIRELY: names no configuration key")
}

func TestServiceLinkShapes(t *testing.T) {
	f := func(kv string, want bool) {
		t.Helper()
		name, val, _ := strings.Cut(kv, "=")
		if got := serviceLink(name, val); got != want {
			t.Errorf("serviceLink(%s) = %v, want %v", kv, got, want)
		}
	}
	f("X_SERVICE_HOST=1.2.3.4", true)
	f("X_SERVICE_HOST=", false)
	f("X_SERVICE_PORT=0", false)
	f("X_SERVICE_PORT=65535", true)
	f("X_SERVICE_PORT=65536", false)
	f("X_SERVICE_PORT_GRPC_WEB=443", true)
	f("X_PORT=tcp://1.2.3.4:5", true)
	f("X_PORT=tcp://1.2.3.4", false)
	f("X_PORT=http://1.2.3.4:5", false)
	f("X_PORT_5_SCTP=sctp://1.2.3.4:5", true)
	f("X_PORT_5_TCP_PORT=5", true)
	f("X_PORT_5_TCP_PORT=five", false)
	f("X_PORT_5_HTTP=tcp://1.2.3.4:5", false)
	f("X_ADDR=1.2.3.4", false)
}

func TestNamedByEnvKeys(t *testing.T) {
	var c struct {
		Kafka struct {
			SASL struct {
				PasswordEnv string `yaml:"password_env"`
				Username    string `yaml:"username"`
			} `yaml:"sasl"`
		} `yaml:"kafka"`
		TokenEnv string `yaml:"token_env"`
	}
	c.Kafka.SASL.PasswordEnv = "LAMBDAREC_KAFKA_PASSWORD"
	c.Kafka.SASL.Username = "LAMBDAREC_NOT_A_POINTER"
	keys := map[string]reflect.Value{}
	collect(reflect.ValueOf(&c).Elem(), "", "", keys, map[string]string{})
	got := namedByEnvKeys(keys)
	if !got["LAMBDAREC_KAFKA_PASSWORD"] || got["LAMBDAREC_NOT_A_POINTER"] || got[""] || len(got) != 1 {
		t.Errorf("namedByEnvKeys = %v, want only LAMBDAREC_KAFKA_PASSWORD", got)
	}
}
