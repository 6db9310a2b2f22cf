# oomguard's image for the DaemonSet in deploy/kubernetes/.
#   docker build -t ghcr.io/oomguard/oomguard:0.2.0 .
# Kernel headers come from the node (/lib/modules and /usr/src are mounted read-only).
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-bpfcc python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN python3 -m venv --system-site-packages /opt/oomguard \
 && /opt/oomguard/bin/pip install --no-cache-dir /src \
 && rm -rf /src
ENTRYPOINT ["/opt/oomguard/bin/oomguard"]
CMD ["run", "-c", "/etc/oomguard/config.toml"]
