"""dogbreed: fine-tune, tune, debug, register and serve dog-breed classifiers on your own machine or cluster.

The Python SDK has the SageMaker Python SDK's names and signatures, so a SageMaker notebook ports by changing its
imports (`import dogbreed as sagemaker`, `from dogbreed.tuner import ...`):

    from dogbreed import Estimator, HyperparameterTuner, ContinuousParameter, CategoricalParameter
    est = Estimator(hyperparameters={"epochs": 10})
    est.fit("../shared/datasets/stanford-dogs-120")
    predictor = est.deploy(initial_instance_count=1, instance_type="ml.m5.large")
"""

__version__ = "0.2.0"

from dogbreed import amazon  # noqa: E402,F401 - `sagemaker.amazon.amazon_estimator` as an attribute
from dogbreed import analytics, debugger, deserializers, estimator, image_uris, inputs, parameter  # noqa: E402,F401
from dogbreed import predictor, serializers, session, tuner, utils  # noqa: E402,F401
from dogbreed import model  # noqa: E402,F401
from dogbreed.amazon import amazon_estimator  # noqa: E402,F401
from dogbreed.analytics import HyperparameterTuningJobAnalytics, TrainingJobAnalytics  # noqa: E402
from dogbreed.data.check import check_dataset  # noqa: E402 - dogbreed's own: the data check before a job
from dogbreed.jobs.logs_export import export_logs  # noqa: E402 - dogbreed's own: a job's logs to a bucket
from dogbreed.estimator import Estimator  # noqa: E402
from dogbreed.inputs import TrainingInput  # noqa: E402
from dogbreed.model import Model  # noqa: E402
from dogbreed.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter  # noqa: E402
from dogbreed.predictor import Predictor  # noqa: E402
from dogbreed.session import Session, get_execution_role  # noqa: E402
from dogbreed.tuner import HyperparameterTuner, WarmStartConfig, WarmStartTypes  # noqa: E402

__all__ = ["__version__", "Estimator", "HyperparameterTuner", "ContinuousParameter", "IntegerParameter",
           "CategoricalParameter", "WarmStartConfig", "WarmStartTypes", "TrainingInput", "Predictor", "Model",
           "Session", "get_execution_role", "HyperparameterTuningJobAnalytics", "TrainingJobAnalytics",
           "check_dataset", "export_logs",
           # modules, as `sagemaker.<module>` attributes
           "amazon", "amazon_estimator", "analytics", "debugger", "deserializers", "estimator", "image_uris", "inputs",
           "model", "parameter", "predictor", "serializers", "session", "tuner", "utils"]
