package rpc_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/metadata"

	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/schemas/schemasconnect"
	"github.com/lambdarec/lambdarec/serving/rpc"
)

// BenchmarkRecommendations is one recommendation for a session, over gRPC
// (grpc-go, HTTP/2 without TLS) and Connect (protobuf over HTTP/1.1) beside
// the HTTP API's GET on the same server and port (HTTP/1.1 keep-alive): the
// cost of the second front end.
func BenchmarkRecommendations(b *testing.B) {
	e := newTestEnv(b, nil)
	b.Run("grpc", func(b *testing.B) {
		b.ReportAllocs()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+readKey)
		req := &schemas.GetRecommendationsRequest{SessionId: "s1", K: 4}
		var resp schemas.GetRecommendationsResponse
		for b.Loop() {
			if err := e.conn.Invoke(ctx, "/"+rpc.ServiceName+"/GetRecommendations", req, &resp); err != nil || len(resp.GetItems()) != 4 {
				b.Fatalf("%v %v", &resp, err)
			}
		}
	})
	b.Run("connect", func(b *testing.B) {
		b.ReportAllocs()
		c := schemasconnect.NewRecommendationServiceClient(http.DefaultClient, "http://"+e.addr)
		req := connect.NewRequest(&schemas.GetRecommendationsRequest{SessionId: "s1", K: 4})
		req.Header().Set("Authorization", "Bearer "+readKey)
		for b.Loop() {
			if resp, err := c.GetRecommendations(context.Background(), req); err != nil || len(resp.Msg.GetItems()) != 4 {
				b.Fatalf("%v %v", resp, err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		b.ReportAllocs()
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.addr+"/v1/recommendations?session_id=s1&k=4", nil)
		req.Header.Set("Authorization", "Bearer "+readKey)
		for b.Loop() {
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode != http.StatusOK {
				b.Fatalf("status %d", r.StatusCode)
			}
		}
	})
}
