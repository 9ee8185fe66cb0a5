from services.common.migrations import run_env
from services.forecast.models import Base

run_env(Base.metadata)
