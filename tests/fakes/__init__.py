"""Wire-level fakes of the cloud services flagdash deploys to (test code only)."""
