# The operator, meter and GPU agent share one image: `modelpilot run|meter|gpu-agent`.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps . \
 && useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin modelpilot
USER 65532:65532
ENTRYPOINT ["modelpilot"]
