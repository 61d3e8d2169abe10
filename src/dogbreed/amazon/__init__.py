"""`sagemaker.amazon`, for notebooks written against SDK v1 (`get_image_uri`)."""
