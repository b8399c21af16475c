# The app image of the container tests: Debian (mmdebstrap, imported), the static
# migrate-then-run, tini for comparison, the test apps, and an unprivileged user 10001 that owns
# the backup and state directories (as Dockerfile.example prepares them).
FROM localhost/mtr-debian:test
COPY migrate-then-run /usr/local/bin/migrate-then-run
COPY tini /usr/bin/tini
COPY app/ /app/
RUN echo 'app:x:10001:10001:app:/app:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'app:x:10001:' >> /etc/group \
 && echo 'extra:x:2000:app' >> /etc/group \
 && install -d -o 10001 -g 10001 -m 0700 /var/backups/migrate-then-run /var/lib/migrate-then-run
ENV MTR_LOG_FORMAT=json
ENTRYPOINT ["migrate-then-run"]
