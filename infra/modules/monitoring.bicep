// Log Analytics and workspace-based Application Insights, both with local (key) authentication off: telemetry
// is accepted only with an Entra ID token, which the app's identity gets through "Monitoring Metrics Publisher".
param workspaceName string
param appInsightsName string
param location string
param tags object

@minValue(30)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: retentionInDays
    features: { disableLocalAuth: true }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output appInsightsName string = appInsights.name
// The connection string names the ingestion endpoint; with local auth off its key alone sends nothing.
output connectionString string = appInsights.properties.ConnectionString
output workspaceCustomerId string = workspace.properties.customerId
