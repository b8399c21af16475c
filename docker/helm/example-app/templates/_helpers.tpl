{{/* Names and labels shared by every object of the chart. */}}
{{- define "example-app.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "example-app.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "example-app.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The pod's security context: the image's numeric non-root user. */}}
{{- define "example-app.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The migrate container, the same in the hook Job and as an initContainer. */}}
{{- define "example-app.migrateContainer" -}}
- name: migrate
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: {{ toJson .Values.migration.command }}
  env:
    - name: MTR_DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ .Values.database.secretName }}
          key: {{ .Values.database.secretKey }}
    - name: MTR_WAIT_TIMEOUT
      value: {{ .Values.migration.waitTimeout | quote }}
    - name: MTR_LOCK_TIMEOUT
      value: {{ .Values.migration.lockTimeout | quote }}
    - name: MTR_BACKUP_DIR
      value: /var/backups/migrate-then-run
    - name: MTR_LOG_FORMAT
      value: json
  # The tool's failure summary in /dev/termination-log: kubectl describe pod shows it.
  terminationMessagePolicy: FallbackToLogsOnError
  resources: {{ toJson .Values.resources }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: backups
      mountPath: /var/backups/migrate-then-run
{{- end -}}

{{- define "example-app.migrateVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: backups
{{- if .Values.migration.backups.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.migration.backups.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.migration.backups.sizeLimit }}
{{- end }}
{{- end -}}
