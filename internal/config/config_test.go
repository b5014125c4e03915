package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGoodFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yml")
	if len(files) == 0 {
		t.Fatal("no good files")
	}
	for _, f := range files {
		if _, err := Load(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) == 0 {
		t.Fatal("no bad files")
	}
	for _, f := range files {
		if _, err := Load(f, nil); err == nil {
			t.Errorf("%s: loaded without error", f)
		}
	}
}

func TestFullFileSetsEveryKey(t *testing.T) {
	cfg, err := Load("testdata/full.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Kafka.Brokers; !reflect.DeepEqual(got, []string{"kafka-1:9092", "kafka-2:9092"}) {
		t.Errorf("brokers = %v", got)
	}
	if cfg.Kafka.ProduceTimeout != 5*time.Second || cfg.Archive.MaxInterval != 5*time.Second {
		t.Errorf("durations not decoded: %v %v", cfg.Kafka.ProduceTimeout, cfg.Archive.MaxInterval)
	}
	if !cfg.Iceberg.S3.PathStyle || cfg.Iceberg.S3.Region != "eu-central-1" {
		t.Errorf("s3 = %+v", cfg.Iceberg.S3)
	}
}

func TestEmptyIsDefault(t *testing.T) {
	cfg, err := Load("testdata/empty.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("empty file differs from Default():\n%+v\n%+v", cfg, Default())
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Load("", []string{
		"LAMBDAREC_KAFKA_BROKERS=a:1, b:2",
		"LAMBDAREC_KAFKA_PARTITIONS=3",
		"LAMBDAREC_ARCHIVE_MAX_INTERVAL=250ms",
		"LAMBDAREC_ICEBERG_S3_PATH_STYLE=true",
		"PATH=/usr/bin",
		"LAMBDAREC_CONFIG=/etc/lambdarec.yml",
		"LAMBDAREC_MODEL_PAIR=product",
		"LAMBDAREC_MODEL_WEIGHTS_PURCHASE=16",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Kafka.Brokers, []string{"a:1", "b:2"}) || cfg.Kafka.Partitions != 3 ||
		cfg.Archive.MaxInterval != 250*time.Millisecond || !cfg.Iceberg.S3.PathStyle ||
		cfg.Model.Pair.String() != "product" || cfg.Model.Weights.Purchase != 16 {
		t.Errorf("env not applied: %+v", cfg)
	}
	_, err = Load("", []string{"LAMBDAREC_KAFKA_BROKERZ=x"})
	if err == nil || !strings.Contains(err.Error(), "LAMBDAREC_KAFKA_BROKERZ") {
		t.Errorf("unknown variable: got %v", err)
	}
	if _, err = Load("", []string{"LAMBDAREC_MODEL_PAIR=sum"}); err == nil {
		t.Error("unknown pair rule accepted")
	}
	_, err = Load("", []string{"LAMBDAREC_KAFKA_PARTITIONS=many"})
	if err == nil {
		t.Error("bad integer accepted")
	}
}

func TestDefaultIsValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// IsSet names the keys the file or the environment wrote, whatever their
// value: dev keeps those (its own bounds replace only unwritten defaults).
func TestIsSet(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/c.yml"
	d := Default()
	body := fmt.Sprintf("speed:\n  max_sessions: %d\n  group: speed\nbatch:\n  max_memory:\n", d.Speed.MaxSessions)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, []string{"LAMBDAREC_SPEED_MAX_STATE_BYTES=" + strconv.FormatInt(d.Speed.MaxStateBytes, 10)})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"speed.max_sessions":    true, // in the file, at the default
		"speed.group":           true,
		"speed":                 true,
		"speed.max_state_bytes": true,  // by the environment, at the default
		"batch.max_memory":      false, // "key:" without a value
		"speed.max_view_delay":  false,
		"kafka.brokers":         false,
	} {
		if got := cfg.IsSet(key); got != want {
			t.Errorf("IsSet(%q) = %v, want %v", key, got, want)
		}
	}
	if cfg.Speed.MaxSessions != d.Speed.MaxSessions || cfg.Speed.MaxStateBytes != d.Speed.MaxStateBytes || cfg.Batch.MaxMemory != d.Batch.MaxMemory {
		t.Errorf("values changed: %+v", cfg.Speed)
	}
	if d.IsSet("speed.max_sessions") {
		t.Error("Default() marks keys as set")
	}
	// A failed environment value marks nothing; an unknown key stays an error.
	if _, err := Load("", []string{"LAMBDAREC_SPEED_MAX_SESSIONS=many"}); err == nil {
		t.Error("a bad value was accepted")
	}
	if _, err := Parse([]byte("speed:\n  max_sesions: 5\n")); err == nil {
		t.Error("an unknown key was accepted")
	}
}
