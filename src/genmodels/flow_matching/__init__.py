"""Flow matching: continuous normalizing flows trained by regressing a velocity field, without simulation (Lipman et
al. 2023; rectified flow, Liu et al. 2023; OT-CFM, Tong et al. 2024)."""
