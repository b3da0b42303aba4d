"""Storage: S3 through boto3, the embedded SeaweedFS server, and source URIs."""

# Set by s3.available() to the endpoint it made available, for its process tree: a stage
# process reads it (tasks/__main__.py) without importing boto3.
S3_UP_ENV = "PIPELINE_S3_UP"
