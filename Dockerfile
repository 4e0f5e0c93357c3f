# The operator, meter, activator and GPU agent share one image: `modelpilot run|meter|...`.
# `make images` builds the same contents without Docker (devcluster/images.py): Debian
# bookworm's Python 3.11, requirements.lock, the modelpilot package, user 65532.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps . \
 && useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin modelpilot
USER 65532:65532
ENTRYPOINT ["modelpilot"]
