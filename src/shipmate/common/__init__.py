"""Small, standard-library-only building blocks shared by every part of Shipmate.

One home for each word and rule that more than one part uses (desired states,
report phases, event types, back-off, masking, the deployments-directory layout),
so the service, the client, the agent, the plugins and the prediction server cannot
drift apart. Nothing here imports anything outside the standard library.
"""
