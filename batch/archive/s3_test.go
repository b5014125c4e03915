package archive

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/model"
)

// versitygwEnv overrides where the versitygw binary is; by default the test
// uses the go tool declared in go.mod (`go tool -n versitygw` builds it once
// into the build cache).
const versitygwEnv = "VERSITYGW"

// versitygw returns the path of the versitygw binary.
func versitygw(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(versitygwEnv); p != "" {
		return p
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("versitygw: no go command to build the tool with (set %s): %v", versitygwEnv, err)
	}
	out, err := exec.Command(goBin, "tool", "-n", "versitygw").Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go tool -n versitygw: %v %s", err, msg)
	}
	return strings.TrimSpace(string(out))
}

// startS3 starts versitygw serving a fresh directory over S3 on loopback and
// returns its endpoint and credentials.
func startS3(t *testing.T) (endpoint, access, secret string) {
	t.Helper()
	bin := versitygw(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	access, secret = "lambdarec-test", "lambdarec-test-secret"
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--port", addr, "--access", access, "--secret", secret, "posix", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("versitygw log:\n%s", b)
		}
	})
	endpoint = "http://" + addr
	waitFor(t, 30*time.Second, "versitygw to listen", func() bool {
		resp, err := http.Get(endpoint)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return endpoint, access, secret
}

func s3Client(endpoint, access, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(access, secret, ""),
	})
}

// TestArchiveToS3 archives to a warehouse on S3 (versitygw) with the catalog
// on SQLite, credentials coming through the usual AWS chain (environment).
func TestArchiveToS3(t *testing.T) {
	endpoint, access, secret := startS3(t)
	ctx := context.Background()
	cl := s3Client(endpoint, access, secret)
	// The bucket is the operator's; the archiver creates what is inside.
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("lake")}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	b := startBroker(t)
	cfg := testConfig(t, b)
	cfg.Iceberg.Warehouse = "s3://lake/warehouse"
	cfg.Iceberg.S3.Endpoint = endpoint
	cfg.Iceberg.S3.PathStyle = true
	cfg.Iceberg.S3.Region = "us-east-1"
	lake := openLake(t, cfg)
	recs := stream(t, 1500, 6)
	produce(t, b, recs)

	stop := runArchiver(t, cfg, nil)
	waitFor(t, time.Minute, "the stream archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkArchive(t, lake, b, recs)

	// The batch run reads the snapshot from S3 and writes its view there:
	// its model equals a recompute over exactly the archived records.
	var events []model.Event
	for _, s := range recs {
		if s.want != nil {
			events = append(events, model.EventFromProto(s.want, s.pos.Partition, s.pos.Offset))
		}
	}
	params := cfg.Model
	runner, err := batch.New(batch.Config{Lake: lake, Topic: b.topic, Params: &params, TopK: 10}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	res, err := runner.Run(ctx)
	if err != nil {
		t.Fatalf("batch run on S3: %v", err)
	}
	want, err := model.Recompute(params, events)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Model.Diff(want); d != "" {
		t.Fatalf("batch on S3 differs from a recompute of the archived records: %s", d)
	}
	if !maps.Equal(res.Run.Boundary, boundary(t, lake, b.topic)) || res.Run.EventsRead != int64(len(events)) {
		t.Fatalf("batch read %d events up to %v; archived %d up to %v", res.Run.EventsRead, res.Run.Boundary, len(events), boundary(t, lake, b.topic))
	}
	loaded, err := batch.Load(ctx, lake, res.Run, params)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Model.Covisit().Equal(res.Model.Covisit()) {
		t.Fatal("the batch view read back from S3 differs from the one computed")
	}

	// The data and metadata are objects in the bucket.
	var parquet, metadata int
	p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String("lake"), Prefix: aws.String("warehouse/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			switch k := aws.ToString(o.Key); {
			case strings.HasSuffix(k, ".parquet"):
				parquet++
			case strings.HasSuffix(k, ".metadata.json"):
				metadata++
			}
		}
	}
	if parquet == 0 || metadata == 0 {
		t.Fatalf("bucket holds %d parquet and %d metadata files", parquet, metadata)
	}
	t.Logf("bucket holds %d parquet and %d metadata files", parquet, metadata)
}
