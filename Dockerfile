# jobfleet: one image for every role (migrate, supervisor, api, drill); `jobfleet` is the
# entrypoint, the command picks the role. Build from the repository root:
#   docker build -t jobfleet .
# Applications add their handler modules on top (FROM jobfleet; COPY myapp ...; pip install)
# and run `supervisor --handlers myapp.jobs`.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common common
COPY worker worker
COPY supervisor supervisor
COPY sql sql
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# A fixed uid so that volumes and Kubernetes' runAsNonRoot can rely on it.
RUN useradd --system --uid 10001 --create-home --home-dir /home/jobfleet jobfleet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /home/jobfleet
ENV PYTHONUNBUFFERED=1 \
    JOBFLEET_LOG_FORMAT=json
# SIGTERM drains (running jobs get JOBFLEET_GRACE_SECONDS); give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["jobfleet"]
CMD ["supervisor"]
