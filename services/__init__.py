"""SP-E services: one package per microservice plus the shared ``common`` package."""
