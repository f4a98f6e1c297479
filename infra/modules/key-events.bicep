// The event subscription on one vault's system topic: key events only, to
// the KeyEvent function, with an explicit retry policy and dead-lettering
// through the topic's own identity. Deployed in stage 2, once the code
// package exists: Event Grid checks the AzureFunction endpoint on creation.

@description('Name of the vault\'s system topic, in this resource group.')
param systemTopicName string

@description('Name of the event subscription.')
@minLength(3)
@maxLength(64)
param subscriptionName string

@description('Resource id of the KeyEvent function (<function app id>/functions/KeyEvent).')
param functionResourceId string

@description('Key names to deliver events for; empty for every key in the vault.')
param keyNames array

@description('Delivery attempts per event before it is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int

@description('Minutes an event is retried before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int

@description('Resource id of the storage account that receives dead-lettered events.')
param deadLetterStorageAccountId string

@description('Container that receives dead-lettered events.')
param deadLetterContainerName string

// The events the handler acts on (README "What the handler decides");
// secret and certificate events never reach it.
var keyEventTypes = [
  'Microsoft.KeyVault.KeyNewVersionCreated'
  'Microsoft.KeyVault.KeyNearExpiry'
  'Microsoft.KeyVault.KeyExpired'
]

// Key Vault events carry the object name as the subject.
var keyNameFilters = empty(keyNames) ? [] : [
  {
    operatorType: 'StringIn'
    key: 'subject'
    values: keyNames
  }
]

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource keyEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: subscriptionName
  properties: {
    // AzureFunction, not WebHook: Event Grid finds the function and its
    // key itself, so no system key sits in the template.
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionResourceId
        // One event per delivery: a failure redelivers only that event.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: keyEventTypes
      advancedFilters: keyNameFilters
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}
