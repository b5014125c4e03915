package rpc

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/serving"
)

// The answers of the read API as protobuf messages: field for field the
// JSON of the HTTP API.

func recommendationsMessage(r *serving.Recommendations) *schemas.GetRecommendationsResponse {
	out := &schemas.GetRecommendationsResponse{
		UserId:    r.UserID,
		SessionId: r.SessionID,
		K:         int32(r.K),
		Items:     make([]*schemas.RecommendedItem, len(r.Items)),
		AsOf:      asOfMessage(r.AsOf),
	}
	for i, it := range r.Items {
		out.Items[i] = &schemas.RecommendedItem{
			Item:        it.Item,
			Score:       it.Score,
			Source:      it.Source,
			Scale:       it.Scale,
			Explanation: explanationMessage(it.Explanation),
		}
	}
	return out
}

// explanationMessage is e as a message, or nil without one (explain not
// asked).
func explanationMessage(e *serving.Explanation) *schemas.Explanation {
	if e == nil {
		return nil
	}
	out := &schemas.Explanation{
		Score:           e.Score,
		PopularityCount: e.PopularityCount,
		Unavailable:     e.Unavailable,
	}
	if len(e.From) > 0 {
		out.From = make([]*schemas.Contribution, len(e.From))
	}
	for i, c := range e.From {
		out.From[i] = &schemas.Contribution{
			Item:       c.Item,
			Rank:       int32(c.Rank),
			RankWeight: c.RankWeight,
			BatchCount: c.BatchCount,
			SpeedCount: c.SpeedCount,
			TopCount:   c.TopCount,
			Value:      c.Value,
		}
	}
	return out
}

func similarMessage(s *serving.Similar) *schemas.GetSimilarItemsResponse {
	return &schemas.GetSimilarItemsResponse{
		ItemId: s.ItemID,
		K:      int32(s.K),
		Items:  scoredMessages(s.Items),
		AsOf:   asOfMessage(s.AsOf),
	}
}

func scoredMessages(items []store.Scored) []*schemas.ScoredItem {
	out := make([]*schemas.ScoredItem, len(items))
	for i, it := range items {
		out[i] = &schemas.ScoredItem{Item: it.Item, Score: it.Score}
	}
	return out
}

func asOfMessage(a serving.AsOf) *schemas.AsOf {
	out := &schemas.AsOf{Batch: batchMessage(a.Batch)}
	if s := a.Speed; s != nil {
		out.Speed = &schemas.SpeedAsOf{
			EventTime:        timestamp(s.EventTime),
			Partition:        s.Partition,
			Offset:           s.Offset,
			StalenessSeconds: s.StalenessSeconds,
			Scored:           s.Scored,
			ScoredAt:         timestamp(s.ScoredAt),
		}
	}
	return out
}

func batchMessage(b *serving.BatchAsOf) *schemas.BatchAsOf {
	if b == nil {
		return nil
	}
	return &schemas.BatchAsOf{
		BatchId:            b.BatchID,
		Boundary:           b.Boundary,
		CreatedAt:          timestamp(b.CreatedAt),
		SourceMaxEventTime: timestamp(b.SourceMaxEventTime),
		StalenessSeconds:   b.StalenessSeconds,
	}
}

// timestamp is t, or unset for the zero time.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func statusMessage(st serving.Status) (*schemas.GetStatusResponse, error) {
	out := &schemas.GetStatusResponse{
		State:   st.State,
		Healthy: st.Healthy,
		Now:     timestamp(st.Now),
		Batch:   batchMessage(st.Batch),
		Layers:  make([]*schemas.LayerReport, len(st.Layers)),
	}
	for i, l := range st.Layers {
		details, err := structOf(l.Details)
		if err != nil {
			return nil, fmt.Errorf("layer %s details: %w", l.Layer, err)
		}
		lr := &schemas.LayerReport{
			Layer:            l.Layer,
			State:            l.State,
			Healthy:          l.Healthy,
			LastUpdate:       timestamp(l.LastUpdate),
			LagRecords:       l.LagRecords,
			LagSeconds:       l.LagSeconds,
			LagUpperBound:    l.LagUpperBound,
			StalenessSeconds: l.StalenessSeconds,
			Error:            l.Error,
			Details:          details,
			Reasons:          make([]*schemas.Fault, len(l.Reasons)),
		}
		for j, f := range l.Reasons {
			fd, err := structOf(f.Details)
			if err != nil {
				return nil, fmt.Errorf("layer %s fault %s details: %w", l.Layer, f.Code, err)
			}
			lr.Reasons[j] = &schemas.Fault{Code: f.Code, State: f.State, Message: f.Message, Details: fd}
		}
		out.Layers[i] = lr
	}
	return out, nil
}

// structOf converts free-form details to a Struct through their JSON, as
// /v1/status encodes them (times as RFC 3339 strings, numbers as numbers).
func structOf(m map[string]any) (*structpb.Struct, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}
