from services.common.migrations import run_env
from services.ingest.models import Base

run_env(Base.metadata)
