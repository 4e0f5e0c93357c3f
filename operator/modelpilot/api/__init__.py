"""The ModelDeployment API (modelpilot.dev/v1alpha1) as pydantic models."""

GROUP = "modelpilot.dev"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

# Label on every object the operator makes for a model, and on its pods.
MODEL_LABEL = "modelpilot.dev/model-deployment"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelpilot"

# Set by the activator on a ModelDeployment when it starts holding requests for it (the
# time, RFC 3339): the operator's scaler wakes the model at once.
ACTIVATION_ANNOTATION = "modelpilot.dev/activation-requested"
HELD_ANNOTATION = "modelpilot.dev/activation-held"  # with it: how many requests it holds
ACTIVATOR_APP = "modelpilot-activator"  # app.kubernetes.io/name of the activator's pods

Key = tuple[str, str]  # (namespace, ModelDeployment name): how every loop and index keys a model
