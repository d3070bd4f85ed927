"""rq job functions and account drivers that run routed tasks on their accounts."""
