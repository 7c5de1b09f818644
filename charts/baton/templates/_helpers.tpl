{{/*
Names. fullname is "<release>-baton", or the release name when it already contains "baton"
(release "baton": baton-gateway, baton-operator, baton-sim, baton-jaeger).
*/}}
{{- define "baton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "baton.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "baton.gateway.fullname" -}}{{ include "baton.fullname" . | trunc 55 | trimSuffix "-" }}-gateway{{- end -}}
{{- define "baton.operator.fullname" -}}{{ include "baton.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "baton.sim.fullname" -}}{{ include "baton.fullname" . | trunc 59 | trimSuffix "-" }}-sim{{- end -}}
{{- define "baton.jaeger.fullname" -}}{{ include "baton.fullname" . | trunc 56 | trimSuffix "-" }}-jaeger{{- end -}}

{{- define "baton.operator.serviceAccountName" -}}
{{- default (include "baton.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{/* Labels: common ones on every object, selector ones per component. */}}
{{- define "baton.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "baton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: baton
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of a component: (dict "ctx" $ "component" "gateway") */}}
{{- define "baton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "baton.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of a component's objects. */}}
{{- define "baton.componentLabels" -}}
{{ include "baton.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The strategy pods' name label (operator/baton/operator/core/pods.py: labels()). */}}
{{- define "baton.strategyPodLabel" -}}
app.kubernetes.io/name: baton-strategy
{{- end -}}

{{- define "baton.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where strategy pods and the operator reach the gateway: its Service, fully qualified so
pods in other namespaces resolve it too. */}}
{{- define "baton.gateway.address" -}}
{{- printf "%s.%s.svc:%d" (include "baton.gateway.fullname" .) .Release.Namespace (int .Values.gateway.grpc.port) -}}
{{- end -}}

{{/* Every gateway pod's own stable address under the headless Service, comma-separated
(<fullname>-gateway-<i>.<fullname>-gateway-headless.<ns>.svc:<port>): the operator's
--pod-gateway with more than one replica, so a strategy host keeps an attach loop to each pod
(docs/gateway-standby.md, "Strategy hosts on both replicas") and a new leader welcomes it as soon
as it listens, instead of the host dialling the Service, whose endpoint may still be a killed
leader's. With one replica strategy pods dial the Service (the operator's --gateway). */}}
{{- define "baton.gateway.podAddresses" -}}
{{- $name := include "baton.gateway.fullname" . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.gateway.replicas) -}}
{{- $out = append $out (printf "%s-%d.%s-headless.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.gateway.grpc.port)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* The OTLP gRPC endpoint every component exports to; empty when tracing is off. */}}
{{- define "baton.otlpEndpoint" -}}
{{- if .Values.tracing.otlpEndpoint -}}
{{- .Values.tracing.otlpEndpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- printf "http://%s.%s.svc:4317" (include "baton.jaeger.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches (a list, as JSON); [] when cluster-wide. */}}
{{- define "baton.watchNamespaces" -}}
{{- if .Values.operator.clusterWide -}}
{{- list | toJson -}}
{{- else if .Values.operator.watchNamespaces -}}
{{- .Values.operator.watchNamespaces | uniq | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/* The exchange symbols of gateway.markets (NAME -> NAMEUSDT, NAME=SYMBOL -> SYMBOL), for
the simulator's --symbols: a stream of an unlisted symbol stays silent, as on Binance. */}}
{{- define "baton.symbols" -}}
{{- $out := list -}}
{{- range .Values.gateway.markets -}}
{{- if contains "=" . -}}
{{- $out = append $out (index (splitList "=" .) 1 | trim | upper) -}}
{{- else -}}
{{- $out = append $out (printf "%sUSDT" (trim . | upper)) -}}
{{- end -}}
{{- end -}}
{{- $out | uniq | join "," -}}
{{- end -}}

{{/* The exchange credentials Secret's name; empty when there are none. */}}
{{- define "baton.exchangeSecret" -}}
{{- with .Values.exchange.credentials -}}
{{- if .existingSecret -}}
{{- .existingSecret -}}
{{- else if or .apiKey .apiSecret -}}
{{- printf "%s-exchange" (include "baton.fullname" $) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Settings checked across values (the schema checks each value on its own). */}}
{{- define "baton.validate" -}}
{{- if and .Values.operator.clusterWide .Values.operator.watchNamespaces -}}
{{- fail "operator.watchNamespaces must be empty when operator.clusterWide is true (a cluster-wide operator watches every namespace)" -}}
{{- end -}}
{{- with .Values.exchange.credentials -}}
{{- if and .existingSecret (or .apiKey .apiSecret) -}}
{{- fail "exchange.credentials: give either existingSecret or apiKey/apiSecret, not both" -}}
{{- end -}}
{{- if and (not .existingSecret) (or .apiKey .apiSecret) (not (and .apiKey .apiSecret)) -}}
{{- fail "exchange.credentials: apiKey and apiSecret go together" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.gateway.metrics.nodePort .Values.jaeger.service.nodePort (eq (int .Values.gateway.metrics.nodePort) (int .Values.jaeger.service.nodePort)) -}}
{{- fail "gateway.metrics.nodePort and jaeger.service.nodePort must differ" -}}
{{- end -}}
{{- if eq (int .Values.gateway.grpc.port) (int .Values.gateway.metrics.port) -}}
{{- fail "gateway.grpc.port and gateway.metrics.port must differ" -}}
{{- end -}}
{{- if and .Values.operator.metrics.port (eq (int .Values.operator.metrics.port) (int .Values.operator.livenessPort)) -}}
{{- fail "operator.metrics.port and operator.livenessPort must differ" -}}
{{- end -}}
{{- $gw := .Values.gateway -}}
{{- if and (gt (int $gw.replicas) 1) (eq (toString $gw.leaderElection.enabled) "false") -}}
{{- fail (printf "gateway.replicas is %d but gateway.leaderElection.enabled is false: replicas without a Lease would run %d clocks executing side by side (leave enabled unset or true, or set replicas to 1)" (int $gw.replicas) (int $gw.replicas)) -}}
{{- end -}}
{{- if include "baton.gateway.leaderElection" . -}}
{{- $needed := add (mul 2 (ceil $gw.cadenceSeconds | int)) 15 -}}
{{- if lt (int $gw.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds is %d: a leader's SIGTERM hands over at its next tick boundary and waits (bounded) for the standby; with gateway.cadenceSeconds %v it needs at least %d (2 x cadence + 15)" (int $gw.terminationGracePeriodSeconds) $gw.cadenceSeconds (int $needed)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the gateway runs under leader election (gateway.leaderElection.enabled; unset:
on when gateway.replicas > 1), else empty. */}}
{{- define "baton.gateway.leaderElection" -}}
{{- $le := .Values.gateway.leaderElection.enabled -}}
{{- if kindIs "bool" $le -}}
{{- if $le }}true{{ end -}}
{{- else if gt (int .Values.gateway.replicas) 1 -}}
true
{{- end -}}
{{- end -}}

{{/* The gateway's pod names: the Role's resourceNames for the label patch (lease_rbac.pod_names). */}}
{{- define "baton.gateway.podNames" -}}
{{- $name := include "baton.gateway.fullname" . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.gateway.replicas) -}}
{{- $out = append $out (printf "%s-%d" $name $i) -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* The restricted container security context every Baton container runs with. */}}
{{- define "baton.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "baton.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The pod's identity from the downward API: logs and traces name the pod (k8s.pod.name). */}}
{{- define "baton.podIdentityEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/* OTEL_EXPORTER_OTLP_ENDPOINT for a container's env, when tracing is on. */}}
{{- define "baton.otlpEnv" -}}
{{- $endpoint := include "baton.otlpEndpoint" . -}}
{{- if $endpoint -}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $endpoint | quote }}
{{- end -}}
{{- end -}}

{{/*
The operator's RBAC rules: operator/baton/operator/core/rbac.py's RULES, every call it makes and no more
(`baton operator rbac` prints the same). tests/e2e/test_chart.py checks the rendered Role and
ClusterRole against RULES, so change them there first.
*/}}
{{- define "baton.operator.rules" -}}
- apiGroups: [baton.dev]
  resources: [strategyversions]
  verbs: [get, list, watch, patch]
- apiGroups: [baton.dev]
  resources: [strategyversions/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
