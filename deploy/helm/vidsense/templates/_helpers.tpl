{{- /*
These templates use only the part of Go templates and Sprig that test/helpers/go-template.ts implements
(listed at the top of that file), so the chart is rendered and checked by test/unit/deploy/helm-chart.spec.ts
without a helm binary. Keep to it, or extend the renderer and its tests first.
*/ -}}

{{- define "vidsense.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vidsense.fullname" -}}
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

{{- define "vidsense.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vidsense.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vidsense.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vidsense.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "vidsense.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vidsense.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* registry/repository:tag of an image value ({repository, tag}) */ -}}
{{- define "vidsense.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $repository := $image.repository -}}
{{- if $root.Values.image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $root.Values.image.registry) $image.repository -}}
{{- end -}}
{{- printf "%s:%s" $repository (toString (default (default $root.Chart.AppVersion $root.Values.image.tag) $image.tag)) -}}
{{- end -}}

{{- define "vidsense.secretName" -}}
{{- default (include "vidsense.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{- /*
A Redis list KEDA watches: the pending list of one job kind (extract or detect), named by
queueKeys(prefix).pending[kind] in src/queue/keys.ts as "<QUEUE_PREFIX>:queue:pending:<kind>". Change both
together. Arguments: (list $ "<kind>").
*/ -}}
{{- define "vidsense.pendingList" -}}
{{- $root := index . 0 -}}
{{- printf "%s:queue:pending:%s" (default "vidsense" $root.Values.settings.QUEUE_PREFIX) (index . 1) -}}
{{- end -}}

{{- /* Settings the chart sets from its own values; settings and env maps must not set them too. */ -}}
{{- define "vidsense.checkSettings" -}}
{{- $where := index . 0 -}}
{{- $settings := index . 1 -}}
{{- range $name := list "PORT" "HOST" "WORKER_HEALTH_PORT" "WORKER_ROLES" "STORAGE_DRIVER" "STORAGE_DIR" "S3_BUCKET" "S3_REGION" "S3_ENDPOINT" "S3_FORCE_PATH_STYLE" "S3_PREFIX" "MODEL_PATH" "TFJS_MODEL_DIR" "SHUTDOWN_TIMEOUT_MS" "REDIS_URL" "REDIS_CLUSTER_NODES" "QUEUE_SHARDS" "DATABASE_URL" "API_KEY" "ADMIN_TOKEN" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" }}
{{- if hasKey $settings $name }}
{{- fail (printf "%s.%s is set by the chart from its own values (see values.yaml)" $where $name) }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* The settings ConfigMap's data; its hash rolls the pods when it changes. */ -}}
{{- define "vidsense.settings" -}}
{{- include "vidsense.checkSettings" (list "settings" .Values.settings) }}
{{- range $name, $value := .Values.settings }}
{{ $name }}: {{ toString $value | quote }}
{{- end }}
SHUTDOWN_TIMEOUT_MS: {{ mul (int .Values.shutdownTimeoutSeconds) 1000 | quote }}
{{- if .Values.redis.cluster.enabled }}
{{- if hasKey .Values.settings "QUEUE_WAIT_REPLICAS" }}
{{- fail "settings.QUEUE_WAIT_REPLICAS: set redis.cluster.waitReplicas instead" }}
{{- end }}
QUEUE_SHARDS: {{ toString .Values.redis.cluster.shards | quote }}
QUEUE_WAIT_REPLICAS: {{ toString .Values.redis.cluster.waitReplicas | quote }}
{{- end }}
{{- if eq .Values.storage.driver "s3" }}
STORAGE_DRIVER: "s3"
S3_BUCKET: {{ required "storage.s3.bucket is required with storage.driver=s3" .Values.storage.s3.bucket | quote }}
S3_FORCE_PATH_STYLE: {{ ternary "true" "false" .Values.storage.s3.forcePathStyle | quote }}
{{- with .Values.storage.s3.region }}
S3_REGION: {{ . | quote }}
{{- end }}
{{- with .Values.storage.s3.endpoint }}
S3_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with .Values.storage.s3.prefix }}
S3_PREFIX: {{ . | quote }}
{{- end }}
{{- else if eq .Values.storage.driver "local" }}
STORAGE_DRIVER: "local"
STORAGE_DIR: "/data/storage"
{{- else }}
{{- fail (printf "storage.driver must be s3 or local, got %q" (toString .Values.storage.driver)) }}
{{- end }}
{{- end -}}

{{- /* The Secret's data (stringData); only with the chart's own Secret. */ -}}
{{- define "vidsense.secretData" -}}
{{- $redis := .Values.redis -}}
{{- $auth := "" -}}
{{- if $redis.password -}}
{{- $auth = printf "%s:%s@" (urlquery (toString $redis.username)) (urlquery (toString $redis.password)) -}}
{{- end -}}
{{- if $redis.cluster.enabled }}
{{- if empty $redis.cluster.nodes }}
{{- fail "redis.cluster.nodes is required with redis.cluster.enabled" }}
{{- end }}
REDIS_URL: {{ printf "%s+cluster://%s%s" (ternary "rediss" "redis" $redis.tls) $auth (join "," $redis.cluster.nodes) | quote }}
{{- else }}
REDIS_URL: {{ printf "%s://%s%s:%s/%s" (ternary "rediss" "redis" $redis.tls) $auth (required "redis.host is required" $redis.host) (toString $redis.port) (toString $redis.database) | quote }}
{{- end }}
DATABASE_URL: {{ required "postgres.url is required (or secret.existingSecret)" .Values.postgres.url | quote }}
{{- with $redis.password }}
REDIS_PASSWORD: {{ toString . | quote }}
{{- end }}
{{- with $redis.username }}
REDIS_USERNAME: {{ toString . | quote }}
{{- end }}
{{- with .Values.apiKey }}
API_KEY: {{ toString . | quote }}
{{- end }}
{{- if eq .Values.storage.driver "s3" }}
{{- with .Values.storage.s3.accessKeyId }}
AWS_ACCESS_KEY_ID: {{ toString . | quote }}
{{- end }}
{{- with .Values.storage.s3.secretAccessKey }}
AWS_SECRET_ACCESS_KEY: {{ toString . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- /*
Environment of a container: the settings ConfigMap, then the Secret's keys one by one (so the keys only KEDA
reads, REDIS_PASSWORD and REDIS_USERNAME, never reach the processes), then the component's own env map.
Arguments: (list $ "<values path of the env map>" $envMap $roles), $roles being nil for the api and the
migration Job, a worker group's roles (a list) otherwise.
*/ -}}
{{- define "vidsense.env" -}}
{{- $root := index . 0 -}}
{{- $where := index . 1 -}}
{{- $extra := default dict (index . 2) -}}
{{- $roles := index . 3 -}}
{{- include "vidsense.checkSettings" (list $where $extra) }}
{{- /*
Worker roles: the job kinds the group's workers take (extract: ffmpeg frame extraction; detect: the model),
passed on as WORKER_ROLES below. The service refuses a role named twice at start-up.
*/ -}}
{{- if kindIs "slice" $roles }}
{{- if eq (len $roles) 0 }}
{{- fail (printf "%s must name at least one of extract, detect" (replace ".env" ".roles" $where)) }}
{{- end }}
{{- range $role := $roles }}
{{- if not (or (eq (toString $role) "extract") (eq (toString $role) "detect")) }}
{{- fail (printf "%s: %s is not a role; the roles are extract and detect" (replace ".env" ".roles" $where) (toString $role)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $secret := include "vidsense.secretName" $root }}
envFrom:
  - configMapRef:
      name: {{ include "vidsense.fullname" $root }}-settings
env:
{{- range $name := list "REDIS_URL" "DATABASE_URL" }}
  - name: {{ $name }}
    valueFrom:
      secretKeyRef:
        name: {{ $secret }}
        key: {{ $name }}
{{- end }}
{{- range $name := list "API_KEY" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" }}
  - name: {{ $name }}
    valueFrom:
      secretKeyRef:
        name: {{ $secret }}
        key: {{ $name }}
        optional: true
{{- end }}
{{- if kindIs "slice" $roles }}
  - name: WORKER_ROLES
    value: {{ join "," $roles | quote }}
{{- end }}
{{- range $name, $value := $extra }}
  - name: {{ $name }}
    value: {{ toString $value | quote }}
{{- end }}
{{- end -}}

{{- /* MODEL_PATH: in the claim mounted at /models, else the weights baked into the image. */ -}}
{{- define "vidsense.modelPath" -}}
{{- if .Values.model.existingClaim -}}
{{- printf "/models/%s" .Values.model.file -}}
{{- else -}}
{{- printf "/app/models/%s" .Values.model.file -}}
{{- end -}}
{{- end -}}

{{- define "vidsense.storageClaim" -}}
{{- default (printf "%s-storage" (include "vidsense.fullname" .)) .Values.storage.local.existingClaim -}}
{{- end -}}

{{- /* Whether KEDA must authenticate to Redis (with REDIS_PASSWORD from the Secret). */ -}}
{{- define "vidsense.redisAuth" -}}
{{- if .Values.secret.existingSecret -}}
{{- ternary "true" "" .Values.secret.existingSecretHasRedisPassword -}}
{{- else -}}
{{- ternary "true" "" (not (empty .Values.redis.password)) -}}
{{- end -}}
{{- end -}}

{{- /* What every pod of the chart shares: identity, security context, pull secrets. */ -}}
{{- define "vidsense.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- /* Scheduling fields of a component's values: nodeSelector, tolerations, topology spread. */ -}}
{{- define "vidsense.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
