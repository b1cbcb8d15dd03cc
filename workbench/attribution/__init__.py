"""Attribution: where a model looks. Every method is ``fn(model, x, y, **params) -> (N, H, W)``.

Gradient methods: saliency, gradient_input, integrated_gradients, smoothgrad, vargrad, squaregrad,
gradcam, gradcam_pp. Black-box methods: occlusion, rise, lime, kernel_shap, sobol, hsic (and
hsic_interactions, which returns (N, d, d) pairwise scores). FORGrad: forgrad filters any maps,
forgrad_sigma picks its cutoff on validation images. Pick methods by name with
:func:`explainer`; :func:`list_methods` names them all.
"""

# Importing a module registers its methods. No module is named like its function (sobol_sensitivity
# holds sobol), so `workbench.attribution.sobol` is always the function, never a shadowed module.
from workbench.attribution.cam import gradcam, gradcam_pp
from workbench.attribution.forgrad_filter import ForgradSigma, forgrad, forgrad_sigma
from workbench.attribution.gradients import (
    gradient_input,
    integrated_gradients,
    saliency,
    smoothgrad,
    squaregrad,
    vargrad,
)
from workbench.attribution.hsic_dependence import hsic, hsic_interactions
from workbench.attribution.lime_kernel_shap import kernel_shap, lime
from workbench.attribution.occlusion_patches import occlusion
from workbench.attribution.registry import Explainer, explainer, get_method, list_methods
from workbench.attribution.rise_masks import rise
from workbench.attribution.sobol_sensitivity import sobol

__all__ = [
    "Explainer",
    "ForgradSigma",
    "explainer",
    "forgrad",
    "forgrad_sigma",
    "get_method",
    "gradcam",
    "gradcam_pp",
    "gradient_input",
    "hsic",
    "hsic_interactions",
    "integrated_gradients",
    "kernel_shap",
    "lime",
    "list_methods",
    "occlusion",
    "rise",
    "saliency",
    "smoothgrad",
    "sobol",
    "squaregrad",
    "vargrad",
]
