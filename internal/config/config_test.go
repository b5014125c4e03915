package config

import (
	"path/filepath"
	"reflect"
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
