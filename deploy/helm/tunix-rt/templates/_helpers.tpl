{{/* Names and labels, in the usual `helm create` shape. */}}
{{- define "tunix-rt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tunix-rt.fullname" -}}
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

{{- define "tunix-rt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tunix-rt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tunix-rt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tunix-rt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tunix-rt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tunix-rt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: (dict "image" .Values.images.api "root" $). */}}
{{- define "tunix-rt.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The chart's own Secret (only keys given as plain values are in it). */}}
{{- define "tunix-rt.secretName" -}}
{{- printf "%s-secrets" (include "tunix-rt.fullname" .) -}}
{{- end -}}

{{/* Where DATABASE_URL is: (list secretName key).  One of database.url / database.existingSecret is required. */}}
{{- define "tunix-rt.databaseSecretRef" -}}
{{- if .Values.database.existingSecret -}}
name: {{ .Values.database.existingSecret }}
key: {{ .Values.database.existingSecretKey }}
{{- else if .Values.database.url -}}
name: {{ include "tunix-rt.secretName" . }}
key: DATABASE_URL
{{- else -}}
{{- fail "set database.url or database.existingSecret: the registry's PostgreSQL (DATABASE_URL)" -}}
{{- end -}}
{{- end -}}

{{- define "tunix-rt.storeCredentials" -}}
{{- $c := .Values.store.credentials -}}
{{- if and (not $c.existingSecret) (ne (empty $c.accessKeyId) (empty $c.secretAccessKey)) -}}
{{- fail "store.credentials: set both accessKeyId and secretAccessKey, or neither" -}}
{{- end -}}
{{- if or $c.existingSecret $c.accessKeyId -}}true{{- end -}}
{{- end -}}

{{/*
The environment every pod shares: the registry, the store, the log format,
AUTO_MIGRATE=0 (in a fleet only the migration Job migrates), `config`, then
`extraEnv`.  Secrets come from secretKeyRef, never as values.
*/}}
{{- define "tunix-rt.commonEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- include "tunix-rt.databaseSecretRef" . | nindent 6 }}
- name: AUTO_MIGRATE
  value: "0"
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- include "tunix-rt.storeEnv" . }}
{{- range $name, $value := .Values.config }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tunix-rt.storeEnv" -}}
{{- with .Values.store.url }}
- name: ARTIFACTS_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.store.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.store.region }}
- name: AWS_REGION
  value: {{ . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- if include "tunix-rt.storeCredentials" . }}
{{- $c := .Values.store.credentials }}
{{- $secret := default (include "tunix-rt.secretName" .) $c.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $c.accessKeyIdKey "AWS_ACCESS_KEY_ID" (not (empty $c.existingSecret)) }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $c.secretAccessKeyKey "AWS_SECRET_ACCESS_KEY" (not (empty $c.existingSecret)) }}
{{- end }}
{{- end -}}

{{/* API_TOKEN's secretKeyRef, or nothing for an open API. */}}
{{- define "tunix-rt.apiTokenSecretRef" -}}
{{- if .Values.api.existingSecret -}}
name: {{ .Values.api.existingSecret }}
key: {{ .Values.api.existingSecretKey }}
{{- else if .Values.api.token -}}
name: {{ include "tunix-rt.secretName" . }}
key: API_TOKEN
{{- end -}}
{{- end -}}

{{/*
The init container that refuses to start a pod on a database whose
migrations are not exactly this image's (`tunix-migrate --check`).
(dict "root" $ "image" <image values>)
*/}}
{{- define "tunix-rt.checkMigrations" -}}
{{- if .root.Values.migrations.checkInitContainer -}}
initContainers:
  - name: check-migrations
    image: {{ include "tunix-rt.image" (dict "image" .image "root" .root) }}
    imagePullPolicy: {{ .image.pullPolicy }}
    command: [tunix-migrate, --check]
    env:
      - name: DATABASE_URL
        valueFrom:
          secretKeyRef:
            {{- include "tunix-rt.databaseSecretRef" .root | nindent 12 }}
      - name: AUTO_MIGRATE
        value: "0"
    {{- with .root.Values.securityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- end -}}

{{/*
How long a stopping worker process waits for its runs (the workers'
WORKER_SHUTDOWN_TIMEOUT_S): each training has trainingStopSeconds to stop
after its step and save, then its checkpoint is uploaded; never below
shutdownTimeoutSeconds (the setting's default, which dry runs get).

  max(shutdownTimeoutSeconds, trainingStopSeconds + checkpointUploadSeconds)
*/}}
{{- define "tunix-rt.workerShutdownTimeout" -}}
{{- $h := .Values.workers.handBack -}}
{{- max (int $h.shutdownTimeoutSeconds) (add (int $h.trainingStopSeconds) (int $h.checkpointUploadSeconds)) -}}
{{- end -}}

{{/*
Seconds a worker pod gets between SIGTERM and SIGKILL: enough to hand its
trainings back (values.yaml, `workers.handBack`): the shutdown timeout above
plus marginSeconds (the registry write, the re-queue and the exit).
An explicit workers.terminationGracePeriodSeconds below it is refused.
*/}}
{{- define "tunix-rt.workerGracePeriod" -}}
{{- $h := .Values.workers.handBack -}}
{{- $computed := add (int (include "tunix-rt.workerShutdownTimeout" .)) (int $h.marginSeconds) -}}
{{- $set := .Values.workers.terminationGracePeriodSeconds -}}
{{- if and (not (kindIs "invalid" $set)) (ne (toString $set) "") -}}
{{- if lt (int $set) (int $computed) -}}
{{- fail (printf "workers.terminationGracePeriodSeconds=%v is below the hand-back time, %v s (workers.handBack)" $set $computed) -}}
{{- end -}}
{{- int $set -}}
{{- else -}}
{{- $computed -}}
{{- end -}}
{{- end -}}

{{/*
KEDA's query: trainings (not dry runs) that need a worker now or soon:
deferred (waiting for admission), pending (queued), running and
cancel_requested (held by a worker, which is still stopping it).  The
statuses are tasks/lifecycle.py's.  KEDA divides the count by
targetQueryValue (the trainings one pod runs) to get the pods wanted.
*/}}
{{- define "tunix-rt.kedaQuery" -}}
{{- if .Values.workers.keda.query -}}
{{- .Values.workers.keda.query -}}
{{- else -}}
SELECT count(*) FROM tunix_runs WHERE NOT dry_run AND status IN ('deferred', 'pending', 'running', 'cancel_requested')
{{- end -}}
{{- end -}}
