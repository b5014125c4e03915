package config

import (
	"testing"
	"time"
)

func TestMaintenanceKeys(t *testing.T) {
	cfg, err := Load("testdata/maintenance.good.yml", []string{
		"LAMBDAREC_MAINTENANCE_TARGET_FILE_SIZE=33554432",
		"LAMBDAREC_RETENTION_EVENTS=8760h",
	})
	if err != nil {
		t.Fatal(err)
	}
	m, r := cfg.Maintenance, cfg.Retention
	if m.Cron != "@every 5m" || m.SnapshotRetention != 30*time.Minute || m.OrphanMinAge != 2*time.Hour || m.PinMaxAge != 12*time.Hour {
		t.Errorf("maintenance = %+v", m)
	}
	if m.TargetFileSize != 32<<20 || r.Events != 365*24*time.Hour || r.Hot != 72*time.Hour {
		t.Errorf("env overrides not applied: %+v %+v", m, r)
	}
	def := Default()
	if def.Maintenance.Cron != "@every 1h" || def.Maintenance.SnapshotRetention != time.Hour ||
		def.Maintenance.TargetFileSize != 128<<20 || def.Retention.Events != 7*365*24*time.Hour || def.Retention.Hot != 7*24*time.Hour {
		t.Errorf("defaults = %+v %+v", def.Maintenance, def.Retention)
	}
	if _, err := Load("", []string{"LAMBDAREC_MAINTENANCE_CRON="}); err != nil {
		t.Errorf("an empty cron (schedule off) is rejected: %v", err)
	}
}
