"""The pure core: values, rules and policies. Nothing here imports a framework or a driver."""
