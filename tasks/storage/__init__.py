"""Storage: S3 through boto3, the embedded SeaweedFS server, and source URIs."""
