{{/* Names, labels and the settings edges and routers share. */}}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "edge"). */}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: switchboard
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "switchboard.selectorLabels" . }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels a component's selectors match (Deployments, Services, PDBs, policies). */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "switchboard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Whole seconds (rounded up) of a duration of the binaries' syntax restricted by values.schema.json
to number-unit pairs: "5s", "500ms", "1m30s", "2h".
*/}}
{{- define "switchboard.durationSeconds" -}}
{{- $ms := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" . -1 -}}
{{- $n := regexFind "^[0-9]+" . | atoi -}}
{{- $unit := regexReplaceAll "^[0-9]+" . "" -}}
{{- if eq $unit "ms" -}}{{- $ms = add $ms $n -}}
{{- else if eq $unit "s" -}}{{- $ms = add $ms (mul $n 1000) -}}
{{- else if eq $unit "m" -}}{{- $ms = add $ms (mul $n 60000) -}}
{{- else -}}{{- $ms = add $ms (mul $n 3600000) -}}
{{- end -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{/* Pod and container security: non-root 65532, read-only root, no capabilities, seccomp. */}}
{{- define "switchboard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "switchboard.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Secret names: the existing one given, or the chart's. */}}
{{- define "switchboard.roomKeySecretName" -}}
{{- .Values.roomKeySecret.existingSecret | default (printf "%s-room-key" (include "switchboard.fullname" .)) -}}
{{- end -}}
{{- define "switchboard.turnSecretName" -}}
{{- .Values.turn.secret.existingSecret | default (printf "%s-turn" (include "switchboard.fullname" .)) -}}
{{- end -}}
{{- define "switchboard.tenantsSecretName" -}}
{{- .Values.hosted.tenants.existingSecret | default (printf "%s-tenants" (include "switchboard.fullname" .)) -}}
{{- end -}}
{{- define "switchboard.apiTokensSecretName" -}}
{{- .Values.router.api.tokens.existingSecret | default (printf "%s-api-tokens" (include "switchboard.fullname" .)) -}}
{{- end -}}
{{- define "switchboard.natsAuthSecretName" -}}
{{- printf "%s-nats-auth" (include "switchboard.fullname" .) -}}
{{- end -}}

{{/* Whether edges and routers get a tenants file. */}}
{{- define "switchboard.hasTenantsFile" -}}
{{- if and .Values.hosted.enabled (or .Values.hosted.tenants.existingSecret .Values.hosted.tenants.content) -}}true{{- end -}}
{{- end -}}

{{/* The bundled NATS chart's Service name (its nats.fullname). */}}
{{- define "switchboard.natsServiceName" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" .Values.nats.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.natsUrls" -}}
{{- if .Values.natsClient.urls -}}
{{- join "," .Values.natsClient.urls -}}
{{- else if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc:4222" (include "switchboard.natsServiceName" .) .Release.Namespace -}}
{{- else -}}
{{- fail "natsClient.urls: give the external NATS servers' URLs (nats.enabled is false, so no NATS is deployed)" -}}
{{- end -}}
{{- end -}}

{{/* The --nats-* settings, as environment variables (edges and routers). */}}
{{- define "switchboard.natsEnv" -}}
{{- $c := .Values.natsClient -}}
{{- $passwordSet := or $c.password.existingSecret $c.password.value -}}
{{- $tokenSet := or $c.token.existingSecret $c.token.value -}}
{{- if and $tokenSet (or $c.user $c.creds.existingSecret) -}}
{{- fail "natsClient.token cannot be combined with natsClient.user or natsClient.creds (the binaries refuse --nats-token with --nats-user or --nats-creds)" -}}
{{- end -}}
{{- if and $passwordSet (not $c.user) -}}
{{- fail "natsClient.password needs natsClient.user" -}}
{{- end -}}
{{- if and .Values.consul.natsService (not .Values.natsClient.urls) (not .Values.nats.enabled) }}
{{- if not .Values.consul.enabled }}
{{- fail "consul.natsService needs consul.enabled (the NATS servers are found through the Consul agent)" }}
{{- end }}
- name: SWITCHBOARD_NATS_CONSUL_SERVICE
  value: {{ .Values.consul.natsService | quote }}
{{- else }}
- name: SWITCHBOARD_NATS
  value: {{ include "switchboard.natsUrls" . | quote }}
{{- end }}
{{- with $c.user }}
- name: SWITCHBOARD_NATS_USER
  value: {{ . | quote }}
{{- end }}
{{- if $passwordSet }}
- name: SWITCHBOARD_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.password.existingSecret | default (include "switchboard.natsAuthSecretName" .) }}
      key: {{ $c.password.key }}
{{- end }}
{{- if $tokenSet }}
- name: SWITCHBOARD_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $c.token.existingSecret | default (include "switchboard.natsAuthSecretName" .) }}
      key: {{ $c.token.key }}
{{- end }}
{{- if $c.creds.existingSecret }}
- name: SWITCHBOARD_NATS_CREDS
  value: /etc/switchboard/nats-creds/{{ $c.creds.key }}
{{- end }}
{{- if $c.tlsCA.existingSecret }}
- name: SWITCHBOARD_NATS_TLS_CA
  value: /etc/switchboard/nats-ca/{{ $c.tlsCA.key }}
{{- end }}
{{- end -}}

{{- define "switchboard.natsVolumeMounts" -}}
{{- if .Values.natsClient.creds.existingSecret }}
- name: nats-creds
  mountPath: /etc/switchboard/nats-creds
  readOnly: true
{{- end }}
{{- if .Values.natsClient.tlsCA.existingSecret }}
- name: nats-ca
  mountPath: /etc/switchboard/nats-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "switchboard.natsVolumes" -}}
{{- if .Values.natsClient.creds.existingSecret }}
- name: nats-creds
  secret:
    secretName: {{ .Values.natsClient.creds.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.natsClient.creds.key }}
        path: {{ .Values.natsClient.creds.key }}
{{- end }}
{{- if .Values.natsClient.tlsCA.existingSecret }}
- name: nats-ca
  secret:
    secretName: {{ .Values.natsClient.tlsCA.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.natsClient.tlsCA.key }}
        path: {{ .Values.natsClient.tlsCA.key }}
{{- end }}
{{- end -}}

{{/* Settings of edges and routers alike: logging, the cluster's agreements, the room key. */}}
{{- define "switchboard.commonEnv" -}}
- name: SWITCHBOARD_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: SWITCHBOARD_LOG
  value: {{ .Values.logging.filter | quote }}
- name: SWITCHBOARD_SLOTS
  value: {{ .Values.cluster.slots | int64 | quote }}
- name: SWITCHBOARD_USAGE_INTERVAL
  value: {{ .Values.cluster.usageInterval | quote }}
- name: SWITCHBOARD_STATS_RETENTION_HOURS
  value: {{ .Values.cluster.statsRetentionHours | int64 | quote }}
- name: SWITCHBOARD_MAX_ROOM_SIZE
  value: {{ .Values.cluster.maxRoomSize | int64 | quote }}
- name: SWITCHBOARD_ROOM_KEY_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.roomKeySecretName" . }}
      key: {{ .Values.roomKeySecret.key }}
{{- if .Values.hosted.enabled }}
- name: SWITCHBOARD_TENANTS_RELOAD_INTERVAL
  value: {{ .Values.hosted.reloadInterval | quote }}
- name: SWITCHBOARD_TOKEN_LEEWAY
  value: {{ .Values.hosted.tokenLeeway | quote }}
- name: SWITCHBOARD_TOKEN_MAX_LIFETIME
  value: {{ .Values.hosted.tokenMaxLifetime | quote }}
{{- end }}
{{- if include "switchboard.hasTenantsFile" . }}
- name: SWITCHBOARD_TENANTS_FILE
  value: /etc/switchboard/tenants/{{ .Values.hosted.tenants.key }}
{{- end }}
{{- end -}}

{{- define "switchboard.tenantsVolumeMount" -}}
{{- if include "switchboard.hasTenantsFile" . }}
{{/* The directory, never a subPath: the kubelet swaps a symlink there on updates. */}}
- name: tenants
  mountPath: /etc/switchboard/tenants
  readOnly: true
{{- end }}
{{- end -}}

{{- define "switchboard.tenantsVolume" -}}
{{- if include "switchboard.hasTenantsFile" . }}
- name: tenants
  secret:
    secretName: {{ include "switchboard.tenantsSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.hosted.tenants.key }}
        path: {{ .Values.hosted.tenants.key }}
{{- end }}
{{- end -}}

{{/* topologySpreadConstraints over zones and nodes; (dict "ctx" $ "component" "edge" "spread" values). */}}
{{- define "switchboard.topologySpread" -}}
{{- if .spread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .spread.maxSkew }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ .spread.zoneWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "switchboard.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 8 }}
  - maxSkew: {{ .spread.maxSkew }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ .spread.nodeWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "switchboard.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 8 }}
{{- end }}
{{- end -}}

{{/*
A generated secret that survives upgrades: the value already in the cluster (lookup), else a new
random one. (dict "ctx" $ "name" secretName "key" key "length" n)
*/}}
{{- define "switchboard.generatedSecret" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- $data := get $existing "data" | default dict -}}
{{- if hasKey $data .key -}}
{{- index $data .key -}}
{{- else -}}
{{- randAlphaNum (int .length) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* --webhook-ca-file: the mounted CA files, comma-separated. */}}
{{- define "switchboard.webhookCAFiles" -}}
{{- $paths := list -}}
{{- range .Values.hosted.webhookCA.keys -}}
{{- $paths = append $paths (printf "/etc/switchboard/webhook-ca/%s" .) -}}
{{- end -}}
{{- join "," $paths -}}
{{- end -}}

{{/* --consul-*: registration with the node's agent (component: "edge" or "router"). */}}
{{- define "switchboard.consulEnv" -}}
{{- $c := .ctx.Values.consul -}}
{{- if $c.enabled }}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: NODE_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: SWITCHBOARD_CONSUL_ADDR
  value: {{ $c.addr | default (printf "http://$(NODE_IP):%d" (int $c.agentPort)) | quote }}
- name: SWITCHBOARD_CONSUL_ADVERTISE_ADDR
  value: "$(POD_IP)"
- name: SWITCHBOARD_CONSUL_SERVICE_NAME
  value: {{ ternary $c.edgeServiceName $c.routerServiceName (eq .component "edge") | quote }}
{{- with $c.tags }}
- name: SWITCHBOARD_CONSUL_TAGS
  value: {{ join "," . | quote }}
{{- end }}
- name: SWITCHBOARD_CONSUL_DEREGISTER_AFTER
  value: {{ $c.deregisterAfter | quote }}
- name: SWITCHBOARD_CONSUL_SYNC_INTERVAL
  value: {{ $c.syncInterval | quote }}
{{- if $c.token.existingSecret }}
- name: SWITCHBOARD_CONSUL_TOKEN_FILE
  value: /etc/switchboard/consul/{{ $c.token.key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* OTEL_*: span export (component: "edge" or "router"); nothing when tracing.endpoint is empty. */}}
{{- define "switchboard.tracingEnv" -}}
{{- $t := .ctx.Values.tracing -}}
{{- if $t.endpoint }}
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $t.protocol | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ ternary $t.serviceNames.edge $t.serviceNames.router (eq .component "edge") | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $t.samplerArg | toString | quote }}
- name: OTEL_BSP_MAX_QUEUE_SIZE
  value: {{ $t.maxQueueSize | toString | quote }}
- name: OTEL_BSP_SCHEDULE_DELAY
  value: {{ $t.scheduleDelayMs | toString | quote }}
- name: OTEL_EXPORTER_OTLP_TIMEOUT
  value: {{ $t.timeoutMs | toString | quote }}
{{- end }}
{{- end -}}

{{- define "switchboard.consulVolumeMount" -}}
{{- if and .Values.consul.enabled .Values.consul.token.existingSecret }}
- name: consul-token
  mountPath: /etc/switchboard/consul
  readOnly: true
{{- end }}
{{- end -}}

{{- define "switchboard.consulVolume" -}}
{{- if and .Values.consul.enabled .Values.consul.token.existingSecret }}
- name: consul-token
  secret:
    secretName: {{ .Values.consul.token.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.consul.token.key }}
        path: {{ .Values.consul.token.key }}
{{- end }}
{{- end -}}
