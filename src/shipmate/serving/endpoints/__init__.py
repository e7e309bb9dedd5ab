"""The prediction server's endpoints, one module per protocol, each thin over the data plane.

`datarobot`: DataRobot's portable prediction server (health, info, predictions);
`v2`: the Open Inference Protocol v2; `management`: listing, uploading and deleting
deployments. Each module's ``routes`` lists its routes; `shipmate.serving.app`
puts them together.
"""
