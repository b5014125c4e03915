package k8s

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// rendered is one overlay's objects, by kind and name.
type rendered struct {
	overlay      string
	deployments  map[string]*appsv1.Deployment
	statefulsets map[string]*appsv1.StatefulSet
	cronjobs     map[string]*batchv1.CronJob
	services     map[string]*corev1.Service
	configmaps   map[string]*corev1.ConfigMap
	accounts     map[string]*corev1.ServiceAccount
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	monitors     map[string]*monitoringv1.ServiceMonitor
}

func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), "overlays/"+overlay)
	if err != nil {
		t.Fatalf("render %s: %v", overlay, err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, batchv1.AddToScheme, corev1.AddToScheme,
		policyv1.AddToScheme, autoscalingv2.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	r := &rendered{overlay: overlay,
		deployments: map[string]*appsv1.Deployment{}, statefulsets: map[string]*appsv1.StatefulSet{},
		cronjobs: map[string]*batchv1.CronJob{}, services: map[string]*corev1.Service{},
		configmaps: map[string]*corev1.ConfigMap{}, accounts: map[string]*corev1.ServiceAccount{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		monitors: map[string]*monitoringv1.ServiceMonitor{}}
	for _, res := range rm.Resources() {
		b, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s: %v", overlay, res.CurId(), err)
		}
		// Strict: an unknown or duplicated field is an error, as with
		// kubectl's server-side field validation.
		obj, _, err := dec.Decode(b, nil, nil)
		if err != nil {
			t.Fatalf("%s: decode %s: %v", overlay, res.CurId(), err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			r.statefulsets[o.Name] = o
		case *batchv1.CronJob:
			r.cronjobs[o.Name] = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *corev1.ConfigMap:
			r.configmaps[o.Name] = o
		case *corev1.ServiceAccount:
			r.accounts[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdbs[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas[o.Name] = o
		case *monitoringv1.ServiceMonitor:
			r.monitors[o.Name] = o
		case *corev1.Secret:
			t.Errorf("%s: Secret %s rendered: secrets are referenced, never inlined", overlay, o.Name)
		default:
			t.Errorf("%s: unexpected object %T %s", overlay, obj, res.CurId())
		}
	}
	return r
}

// workload is one pod template and what runs it.
type workload struct {
	kind, name string
	meta       map[string]string // pod labels
	spec       *corev1.PodSpec
	longLived  bool // a server (probes), not a Job
}

func (r *rendered) workloads() []workload {
	var ws []workload
	for n, d := range r.deployments {
		ws = append(ws, workload{"Deployment", n, d.Spec.Template.Labels, &d.Spec.Template.Spec, true})
	}
	for n, s := range r.statefulsets {
		ws = append(ws, workload{"StatefulSet", n, s.Spec.Template.Labels, &s.Spec.Template.Spec, true})
	}
	for n, c := range r.cronjobs {
		ws = append(ws, workload{"CronJob", n, c.Spec.JobTemplate.Spec.Template.Labels, &c.Spec.JobTemplate.Spec.Template.Spec, false})
	}
	slices.SortFunc(ws, func(a, b workload) int { return strings.Compare(a.kind+a.name, b.kind+b.name) })
	return ws
}

// config returns the lambdarec.yml of the overlay's ConfigMap, parsed.
func (r *rendered) config(t *testing.T) (name string, cfg map[string]any) {
	t.Helper()
	for n, cm := range r.configmaps {
		if strings.HasPrefix(n, "lambdarec-") && cm.Data["lambdarec.yml"] != "" {
			if err := yaml.Unmarshal([]byte(cm.Data["lambdarec.yml"]), &cfg); err != nil {
				t.Fatalf("%s: lambdarec.yml: %v", r.overlay, err)
			}
			return n, cfg
		}
	}
	t.Fatalf("%s: no lambdarec ConfigMap with lambdarec.yml", r.overlay)
	return "", nil
}

func key(cfg map[string]any, path string) any {
	var v any = cfg
	for p := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func TestOverlays(t *testing.T) {
	for _, overlay := range []string{"dev", "production"} {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			checkPods(t, r)
			checkRoles(t, r)
			checkConfig(t, r)
			checkMonitoring(t, r)
			checkSpeedScorers(t, r)
			switch overlay {
			case "dev":
				if _, ok := r.deployments["lambdarec-broker"]; !ok {
					t.Error("dev: no embedded broker Deployment")
				}
				_, cfg := r.config(t)
				if b := fmt.Sprint(key(cfg, "kafka.brokers")); !strings.Contains(b, "lambdarec-broker:9092") {
					t.Errorf("dev: kafka.brokers = %s, want the broker Service", b)
				}
			case "production":
				sa := r.accounts["lambdarec"]
				if sa == nil || !strings.HasPrefix(sa.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
					t.Error("production: ServiceAccount lambdarec has no IRSA role annotation")
				}
				if _, ok := r.deployments["lambdarec-broker"]; ok {
					t.Error("production: the embedded broker is deployed")
				}
				for _, w := range r.workloads() {
					for _, c := range w.spec.Containers {
						if !strings.Contains(c.Image, "/") || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
							t.Errorf("production: %s %s: image %q is not a pinned registry image", w.kind, w.name, c.Image)
						}
					}
					if !mountsSecret(w.spec, "lambdarec-kafka") {
						t.Errorf("production: %s %s does not mount the Kafka SASL Secret", w.kind, w.name)
					}
				}
				if !mountsSecret(&r.deployments["lambdarec-serve"].Spec.Template.Spec, "lambdarec-api-keys") {
					t.Error("production: serve does not mount the API keys Secret")
				}
			}
		})
	}
}

func mountsSecret(spec *corev1.PodSpec, secret string) bool {
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret {
			for _, m := range spec.Containers[0].VolumeMounts {
				if m.Name == v.Name {
					return true
				}
			}
		}
	}
	return false
}

// checkPods asserts what every pod of every role must have.
func checkPods(t *testing.T, r *rendered) {
	cmName, _ := r.config(t)
	allowedSecrets := []string{"lambdarec-catalog", "lambdarec-clickhouse", "lambdarec-kafka", "lambdarec-api-keys"}
	for _, w := range r.workloads() {
		id := r.overlay + ": " + w.kind + " " + w.name
		s := w.spec
		if s.EnableServiceLinks == nil || *s.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks is not false", id)
		}
		if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false", id)
		}
		if s.ServiceAccountName != "lambdarec" || r.accounts["lambdarec"] == nil {
			t.Errorf("%s: serviceAccountName %q, want the lambdarec ServiceAccount", id, s.ServiceAccountName)
		}
		if ps := s.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
			t.Errorf("%s: pod securityContext does not require a non-root user", id)
		}
		if len(s.Containers) == 0 {
			t.Fatalf("%s: no containers", id)
		}
		for _, c := range s.Containers {
			cid := id + " container " + c.Name
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s: no securityContext", cid)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: allowPrivilegeEscalation is not false", cid)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: root filesystem is not read-only", cid)
			case sc.Privileged != nil && *sc.Privileged:
				t.Errorf("%s: privileged", cid)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
				t.Errorf("%s: capabilities not dropped", cid)
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[res]; !ok {
					t.Errorf("%s: no %s request", cid, res)
				}
				if _, ok := c.Resources.Limits[res]; !ok {
					t.Errorf("%s: no %s limit", cid, res)
				}
			}
			if len(c.Args) == 0 {
				t.Errorf("%s: no role argument", cid)
			}
			configEnv := false
			for _, e := range c.Env {
				if e.Name == "LAMBDAREC_CONFIG" && e.Value == "/etc/lambdarec/lambdarec.yml" {
					configEnv = true
				}
				if e.Value != "" && (strings.Contains(strings.ToLower(e.Name), "password") || strings.Contains(e.Value, "://") && strings.Contains(e.Value, "@")) {
					t.Errorf("%s: %s carries a credential inline", cid, e.Name)
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !slices.Contains(allowedSecrets, e.ValueFrom.SecretKeyRef.Name) {
					t.Errorf("%s: %s from unknown Secret %s", cid, e.Name, e.ValueFrom.SecretKeyRef.Name)
				}
			}
			if !configEnv {
				t.Errorf("%s: LAMBDAREC_CONFIG not set to the mounted file", cid)
			}
			if w.longLived {
				ports := map[string]bool{}
				for _, p := range c.Ports {
					ports[p.Name] = true
				}
				for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
					switch {
					case p == nil:
						t.Errorf("%s: no %s probe", cid, name)
					case p.HTTPGet != nil && !ports[p.HTTPGet.Port.String()]:
						t.Errorf("%s: %s probe on port %s the container does not declare", cid, name, p.HTTPGet.Port.String())
					case p.TCPSocket != nil && !ports[p.TCPSocket.Port.String()]:
						t.Errorf("%s: %s probe on port %s the container does not declare", cid, name, p.TCPSocket.Port.String())
					}
				}
			}
		}
		mounted := false
		for _, v := range s.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == cmName {
				mounted = true
			}
			if v.Secret != nil && !slices.Contains(allowedSecrets, v.Secret.SecretName) {
				t.Errorf("%s: volume from unknown Secret %s", id, v.Secret.SecretName)
			}
		}
		if !mounted {
			t.Errorf("%s: does not mount ConfigMap %s", id, cmName)
		}
	}
}

// checkRoles asserts each role's workload kind and its scaling contract.
func checkRoles(t *testing.T, r *rendered) {
	o := r.overlay
	serve := r.deployments["lambdarec-serve"]
	if serve == nil {
		t.Fatalf("%s: no Deployment lambdarec-serve", o)
	}
	if serve.Spec.Replicas == nil || *serve.Spec.Replicas < 2 {
		t.Errorf("%s: serve replicas < 2", o)
	}
	if ru := serve.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("%s: serve rolling update may take a replica away before its successor is ready", o)
	}
	podLabels := labels.Set(serve.Spec.Template.Labels)
	if pdb := r.pdbs["lambdarec-serve"]; pdb == nil || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 ||
		!selects(t, pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: no PodDisruptionBudget keeping a serve replica", o)
	}
	if hpa := r.hpas["lambdarec-serve"]; hpa == nil || hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != "lambdarec-serve" ||
		hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Errorf("%s: no HorizontalPodAutoscaler on serve with at least 2 replicas", o)
	}
	if svc := r.services["lambdarec-serve"]; svc == nil || !selects(t, svc.Spec.Selector, podLabels) {
		t.Errorf("%s: no Service in front of serve", o)
	}

	speed := r.statefulsets["lambdarec-speed"]
	if speed == nil {
		t.Fatalf("%s: speed is not a StatefulSet lambdarec-speed", o)
	}
	if svc := r.services[speed.Spec.ServiceName]; svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s: speed's serviceName %q is not a headless Service", o, speed.Spec.ServiceName)
	}
	staticID := false
	for _, e := range speed.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "LAMBDAREC_SPEED_INSTANCE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			staticID = true
		}
	}
	if !staticID {
		t.Errorf("%s: speed's static member id (LAMBDAREC_SPEED_INSTANCE_ID) is not the pod name", o)
	}
	if pdb := r.pdbs["lambdarec-speed"]; pdb == nil || !selects(t, pdb.Spec.Selector.MatchLabels, speed.Spec.Template.Labels) {
		t.Errorf("%s: no PodDisruptionBudget on speed", o)
	}

	arch := r.deployments["lambdarec-archive"]
	if arch == nil || arch.Spec.Replicas == nil || *arch.Spec.Replicas != 1 || arch.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("%s: archive is not one replica with the Recreate strategy", o)
	}

	for name, args := range map[string][]string{"lambdarec-batch": {"batch", "run"}, "lambdarec-maintain": {"maintain"}} {
		cj := r.cronjobs[name]
		if cj == nil {
			t.Errorf("%s: no CronJob %s", o, name)
			continue
		}
		if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("%s: CronJob %s concurrencyPolicy %q, want Forbid", o, name, cj.Spec.ConcurrencyPolicy)
		}
		if got := cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, args) {
			t.Errorf("%s: CronJob %s args %v, want %v", o, name, got, args)
		}
		if cj.Spec.JobTemplate.Spec.ActiveDeadlineSeconds == nil {
			t.Errorf("%s: CronJob %s has no deadline", o, name)
		}
	}
}

// checkConfig asserts the ConfigMap's lambdarec.yml: metrics on the pod IP,
// the shared serving store, and no credentials.
func checkConfig(t *testing.T, r *rendered) {
	_, cfg := r.config(t)
	o := r.overlay
	ports := map[string]string{"archive.metrics_addr": "lambdarec-archive", "speed.metrics_addr": "lambdarec-speed", "serve.addr": "lambdarec-serve"}
	for k, svc := range ports {
		addr, _ := key(cfg, k).(string)
		if !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Errorf("%s: %s = %q, want the pod IP (0.0.0.0:port)", o, k, addr)
			continue
		}
		// The container declares the port the configuration binds.
		port := strings.TrimPrefix(addr, "0.0.0.0:")
		var declared []string
		for _, w := range r.workloads() {
			if w.name == svc {
				for _, p := range w.spec.Containers[0].Ports {
					declared = append(declared, fmt.Sprint(p.ContainerPort))
				}
			}
		}
		if !slices.Contains(declared, port) {
			t.Errorf("%s: %s binds port %s, %s declares %v", o, k, port, svc, declared)
		}
	}
	if b := key(cfg, "store.backend"); b != "clickhouse" {
		t.Errorf("%s: store.backend = %v: speed's real-time view would not reach serve", o, b)
	}
	for _, k := range []string{"iceberg.catalog_uri", "clickhouse.dsn"} {
		if v := key(cfg, k); v != nil {
			t.Errorf("%s: %s inlined in the ConfigMap (it comes from a Secret)", o, k)
		}
	}
	raw := fmt.Sprint(cfg)
	for _, bad := range []string{"password:", "secret_access_key", "token:"} {
		if strings.Contains(raw, bad) {
			t.Errorf("%s: ConfigMap holds %q", o, bad)
		}
	}
}

// checkMonitoring asserts that a ServiceMonitor scrapes every role's metrics
// Service through a port the Service declares.
func checkMonitoring(t *testing.T, r *rendered) {
	sm := r.monitors["lambdarec"]
	if sm == nil {
		t.Fatalf("%s: no ServiceMonitor", r.overlay)
	}
	ports := map[string]bool{}
	for _, e := range sm.Spec.Endpoints {
		ports[e.Port] = true
	}
	for _, name := range []string{"lambdarec-serve", "lambdarec-speed", "lambdarec-archive"} {
		svc := r.services[name]
		if svc == nil {
			t.Errorf("%s: no Service %s for metrics", r.overlay, name)
			continue
		}
		if !selects(t, sm.Spec.Selector.MatchLabels, svc.Labels) {
			t.Errorf("%s: ServiceMonitor does not select Service %s", r.overlay, name)
		}
		scraped := false
		for _, p := range svc.Spec.Ports {
			scraped = scraped || ports[p.Name]
		}
		if !scraped {
			t.Errorf("%s: no ServiceMonitor endpoint on a port of %s", r.overlay, name)
		}
	}
}

func selects(t *testing.T, selector map[string]string, set labels.Set) bool {
	t.Helper()
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(set)
}

// checkSpeedScorers asserts serve.speed_scorers: each URL's host is a
// load-balanced (not headless) Service selecting the speed StatefulSet's
// pods, on a port that targets their metrics port (speed.metrics_addr,
// where the scoring endpoint is), and not scraped by the ServiceMonitor (the
// headless lambdarec-speed is).
func checkSpeedScorers(t *testing.T, r *rendered) {
	_, cfg := r.config(t)
	o := r.overlay
	urls, _ := key(cfg, "serve.speed_scorers").([]any)
	if len(urls) == 0 {
		t.Errorf("%s: serve.speed_scorers is empty: serve does not score at read", o)
	}
	speed := r.statefulsets["lambdarec-speed"]
	scraped := map[string]bool{}
	for _, e := range r.monitors["lambdarec"].Spec.Endpoints {
		scraped[e.Port] = true
	}
	for _, u := range urls {
		s, _ := u.(string)
		host, port, ok := strings.Cut(strings.TrimPrefix(s, "http://"), ":")
		if !ok || !strings.HasPrefix(s, "http://") {
			t.Errorf("%s: serve.speed_scorers %q is not http://service:port", o, s)
			continue
		}
		svc := r.services[host]
		if svc == nil {
			t.Errorf("%s: serve.speed_scorers %q: no Service %s", o, s, host)
			continue
		}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			t.Errorf("%s: Service %s is headless: the scorings would not be balanced", o, host)
		}
		if !selects(t, svc.Spec.Selector, speed.Spec.Template.Labels) {
			t.Errorf("%s: Service %s does not select the speed members", o, host)
		}
		found := false
		for _, p := range svc.Spec.Ports {
			if fmt.Sprint(p.Port) != port {
				continue
			}
			found = p.TargetPort.String() == "metrics"
			if scraped[p.Name] {
				t.Errorf("%s: Service %s port %s is scraped: the members would be scraped twice", o, host, p.Name)
			}
		}
		if !found {
			t.Errorf("%s: Service %s has no port %s targeting the speed members' metrics port", o, host, port)
		}
	}
}
