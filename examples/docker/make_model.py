"""Builds a small scikit-learn regression package for the example: python3 make_model.py OUT.mlpkg"""

import sys

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from shipmate.packages import build_sklearn_package

rng = np.random.default_rng(0)
frame = pd.DataFrame(rng.normal(size=(100, 3)), columns=["rooms", "age", "distance"])
price = 3 * frame["rooms"] - frame["age"] - 0.5 * frame["distance"]
build_sklearn_package(LinearRegression().fit(frame, price), frame.head(20), sys.argv[1], name="house-prices")
print(sys.argv[1])
