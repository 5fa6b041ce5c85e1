"""DNN inference placement (Zhang et al., "Deep Reinforcement Learning Based Resource
Management for DNN Inference in Industrial IoT") on the server: the MDP of eqs. (12)-(14)
with its slot-executor hook (:mod:`.env`), the TD3 / DDPG / random agents
(:mod:`.agents`), measured profiles and systems (:mod:`.scenario`) and the pure system
model with DCPU (:mod:`.solver`)."""
