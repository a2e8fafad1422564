# Base image for Cabalmail's three mail tiers (imap, smtp-in, smtp-out): sendmail, sendmail-cf,
# opendkim, supervisord, and the reconfigure daemon as a supervisord program. Each tier image
# starts FROM this one and adds its own packages, configs and programs (see the end).
#
#   docker build -t cabal-mail-base .
#
# Both stages use the same Amazon Linux 2023 image, pinned by digest: the venvs built in the
# first stage point at /usr/bin/python3.11, which the final stage installs from the same
# repository snapshot. AL2023 ties its package repositories to the image's release, so the
# digest also fixes every dnf package version; that is why the dnf lines below pin no versions
# (hadolint DL3041 is ignored on them for that reason). Change the digest to move everything.
ARG BASE_IMAGE=amazonlinux:2023@sha256:181f98c48832fe926f8ca3b6ffeafcce128e96e77b93d08fbe9a9bc9403ce284

# ── build: two self-contained venvs, supervisor and reconfigure (from its wheel) ──────────
FROM ${BASE_IMAGE} AS build

# hadolint ignore=DL3041
RUN dnf install -y python3.11 python3.11-pip \
    && dnf clean all \
    && rm -rf /var/cache/dnf

WORKDIR /src

# Every Python package comes from a lock file with sha256 hashes (deploy/*.lock, made by
# `uv pip compile --generate-hashes`; each file's header has the command): pip refuses a file
# whose hash is not listed, and --no-deps means nothing the lock does not name is installed.
# The locks hold wheels for both x86_64 and aarch64.
COPY deploy/requirements.lock deploy/supervisor.lock deploy/build.lock deploy/

# supervisor is not in the AL2023 repositories (it is an EPEL package, and AL2023 has no
# EPEL), so it comes from PyPI into a venv of its own: nothing is pip-installed into the
# dnf-managed system Python, and it shares no dependency with reconfigure.
RUN python3.11 -m venv /opt/supervisor \
    && /opt/supervisor/bin/pip install --no-cache-dir --require-hashes --no-deps \
       -r deploy/supervisor.lock

# reconfigure's runtime dependencies, before its own code so a code change keeps this layer.
# The venv is made at the path it will run from, so its scripts' #! lines stay valid.
RUN python3.11 -m venv /opt/reconfigure \
    && /opt/reconfigure/bin/pip install --no-cache-dir --require-hashes --no-deps \
       -r deploy/requirements.lock

# What the wheel is made of: pyproject.toml names README.md as the readme and ships the
# package, whose templates symlink leads to templates/ (tests/test_dockerfile.py checks this).
COPY pyproject.toml README.md ./
COPY reconfigure/ reconfigure/
COPY templates/ templates/

# The wheel builds with the locked hatchling from a throw-away venv (no build isolation, which
# would fetch an unpinned hatchling), then goes into the venv alone: its dependencies are
# already there from the lock.
RUN python3.11 -m venv /tmp/build \
    && /tmp/build/bin/pip install --no-cache-dir --require-hashes --no-deps -r deploy/build.lock \
    && /tmp/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist . \
    && /opt/reconfigure/bin/pip install --no-cache-dir --no-deps /dist/reconfigure-*.whl

# ── the base image ──────────────────────────────────────────────────────────────────────────
FROM ${BASE_IMAGE}

# sendmail, sendmail-cf, m4: the MTA, makemap, newaliases, and what compiles sendmail.mc.
# opendkim: the DKIM milter. python3.11: the interpreter both venvs were built against.
# shadow-utils: useradd/groupadd for the OS user sync. procps-ng: ps/pgrep for operators.
# The login.defs edit lets the Cognito-allocated ids (above 65535) be used as uids/gids. The
# sendmail package's install script leaves a self-signed key pair behind; it is deleted in
# this same layer (a later layer could not remove it from the image) since the entrypoint
# writes the real certificate under other names.
# hadolint ignore=DL3041
RUN dnf install -y sendmail sendmail-cf m4 opendkim python3.11 shadow-utils procps-ng \
    && dnf clean all \
    && rm -rf /var/cache/dnf \
    && sed -ri 's/^([UG]ID_MAX)[[:space:]].*/\1 2147483647/' /etc/login.defs \
    && rm -f /etc/pki/tls/private/sendmail.key /etc/pki/tls/certs/sendmail.pem \
    && mkdir -p /etc/supervisord.d /var/lib/reconfigure /var/log/supervisor

COPY --from=build /opt/supervisor /opt/supervisor
COPY --from=build /opt/reconfigure /opt/reconfigure
RUN ln -s /opt/supervisor/bin/supervisord /usr/local/bin/supervisord \
    && ln -s /opt/supervisor/bin/supervisorctl /usr/local/bin/supervisorctl \
    && ln -s /opt/reconfigure/bin/reconfigure /usr/local/bin/reconfigure

# A minimal supervisord.conf that runs everything in /etc/supervisord.d/*.ini. A tier image
# either drops its programs there (sendmail, dovecot, opendkim, ...) or replaces this file
# with its own, which then needs the same [include] section to keep the reconfigure program.
RUN printf '%s\n' \
      '[supervisord]' \
      'nodaemon=true' \
      'logfile=/var/log/supervisor/supervisord.log' \
      'pidfile=/run/supervisord.pid' \
      '' \
      '[unix_http_server]' \
      'file=/run/supervisor.sock' \
      'chmod=0700' \
      '' \
      '[rpcinterface:supervisor]' \
      'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface' \
      '' \
      '[supervisorctl]' \
      'serverurl=unix:///run/supervisor.sock' \
      '' \
      '[include]' \
      'files=/etc/supervisord.d/*.ini' \
      > /etc/supervisord.conf

COPY supervisord/reconfigure.conf /etc/supervisord.d/reconfigure.ini

# Unhealthy when the daemon's last cycle failed or its last success is too old (it reads the
# status file the daemon writes). The start period covers the image's startup prep, which
# the daemon waits for before its first cycle.
HEALTHCHECK --interval=60s --timeout=10s --start-period=180s --retries=3 \
    CMD ["/opt/reconfigure/bin/reconfigure", "health"]

CMD ["/usr/local/bin/supervisord", "-n", "-c", "/etc/supervisord.conf"]
