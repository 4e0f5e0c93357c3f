"""The parts of a pod template the operator reads or changes, checked for type before use.

The CRD keeps spec.template as free-form JSON (x-kubernetes-preserve-unknown-fields), so
any value can arrive: these models say, with the field's path, what is not a pod template,
and let every other field through untouched for the API server to judge.
"""

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    # strict: the raw values are what the Deployment gets, so "8000" is no port here.
    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)


class ContainerPort(_Open):
    container_port: int = Field(alias="containerPort", ge=1, le=65535)


class Container(_Open):
    name: str = Field(min_length=1)
    image: str = Field(min_length=1)
    ports: list[ContainerPort] | None = None


class PodSpec(_Open):
    containers: list[Container] = Field(min_length=1)
    termination_grace_period_seconds: int | None = Field(
        None, alias="terminationGracePeriodSeconds", ge=0
    )


class TemplateMetadata(_Open):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class PodTemplate(_Open):
    metadata: TemplateMetadata | None = None
    spec: PodSpec
