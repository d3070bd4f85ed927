"""byoa-router: routes Midjourney-style image tasks across a pool of bring-your-own accounts."""

__version__ = "0.1.0"
