package config

import (
	"strings"
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

// An orphan_min_age below the floor is refused, naming the floor and the
// key that forces it, unless forced; forced, it must still be at least 1s.
func TestOrphanMinAgeFloor(t *testing.T) {
	_, err := Load("testdata/maintenance_orphan_floor.bad.yml", nil)
	if err == nil || !strings.Contains(err.Error(), "maintenance.orphan_min_age: 1m0s is below the safe floor of 15m0s") ||
		!strings.Contains(err.Error(), "maintenance.orphan_min_age_force") {
		t.Fatalf("orphan_min_age 1m: %v", err)
	}
	cfg, err := Load("testdata/maintenance_orphan_force.good.yml", nil)
	if err != nil || cfg.Maintenance.OrphanMinAge != time.Minute || !cfg.Maintenance.OrphanMinAgeForce {
		t.Fatalf("forced orphan_min_age 1m: %+v %v", cfg.Maintenance, err)
	}
	if _, err := Load("", []string{"LAMBDAREC_MAINTENANCE_ORPHAN_MIN_AGE=1s", "LAMBDAREC_MAINTENANCE_ORPHAN_MIN_AGE_FORCE=true"}); err != nil {
		t.Errorf("forced from the environment: %v", err)
	}
	if _, err := Load("", []string{"LAMBDAREC_MAINTENANCE_ORPHAN_MIN_AGE=500ms", "LAMBDAREC_MAINTENANCE_ORPHAN_MIN_AGE_FORCE=true"}); err == nil || !strings.Contains(err.Error(), "must be at least 1s") {
		t.Errorf("forced 500ms: %v, want at least 1s", err)
	}
	if _, err := Load("", []string{"LAMBDAREC_MAINTENANCE_ORPHAN_MIN_AGE=" + OrphanMinAgeFloor.String()}); err != nil {
		t.Errorf("orphan_min_age at the floor: %v", err)
	}
	if Default().Maintenance.OrphanMinAge < OrphanMinAgeFloor || Default().Maintenance.OrphanMinAgeForce {
		t.Errorf("default below the floor or forced: %+v", Default().Maintenance)
	}
}
