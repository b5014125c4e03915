package archive

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/lakehouse/s3test"
	"github.com/lambdarec/lambdarec/internal/model"
)

// TestArchiveToS3 archives to a warehouse on S3 (versitygw) with the catalog
// on SQLite, credentials coming through the usual AWS chain (environment).
func TestArchiveToS3(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	cl := srv.Client()
	// The bucket is the operator's; the archiver creates what is inside.
	srv.CreateBucket(t, "lake")
	srv.SetEnv(t)

	b := startBroker(t)
	cfg := testConfig(t, b)
	cfg.Iceberg.Warehouse = "s3://lake/warehouse"
	cfg.Iceberg.S3.Endpoint = srv.Endpoint
	cfg.Iceberg.S3.PathStyle = true
	cfg.Iceberg.S3.Region = s3test.Region
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
